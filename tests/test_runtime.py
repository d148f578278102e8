"""Allocator settings of the process (glibc ``mallopt``)."""

from __future__ import annotations

import platform

import pytest

from hdcnn import runtime


@pytest.mark.skipif(platform.system() != "Linux", reason="glibc only")
def test_allocator_settings_are_taken_by_glibc() -> None:
    assert runtime.reuse_freed_memory()
    assert runtime.limit_malloc_arenas(2)
    runtime.return_free_memory()  # no error


def test_a_missing_libc_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_libc(name: str) -> object:
        raise OSError(f"{name}: not found")

    monkeypatch.setattr(runtime.ctypes, "CDLL", no_libc)
    assert runtime.reuse_freed_memory() is False
    runtime.return_free_memory()


def test_frozen_objects_leave_full_collections_and_new_cycles_are_still_freed() -> None:
    import gc
    import weakref

    class Node:
        pass

    old = Node()
    try:
        assert runtime.freeze_long_lived() > 0
        assert not any(o is old for o in gc.get_objects())  # no longer walked by gc.collect
        cycle = Node()
        cycle.self = cycle  # type: ignore[attr-defined]
        alive = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert alive() is None  # garbage made after the freeze is still collected
    finally:
        gc.unfreeze()


def test_the_idle_cleaner_waits_until_the_pool_has_nothing_to_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from hdcnn.scheduler import AnalysisPool

    pool = AnalysisPool(1)
    try:
        assert not pool.busy
        gate, started = threading.Event(), threading.Event()
        pool.submit(lambda: (started.set(), gate.wait(60)))
        assert started.wait(60)
        waiting = pool.submit(int)
        assert pool.busy  # one runs, one waits
        returned = threading.Event()
        monkeypatch.setattr(runtime, "return_free_memory", returned.set)
        cleaner = runtime.IdleCleaner(lambda: pool.busy, idle_s=0.05, poll_s=0.01)
        cleaner.request()
        cleaner.request()  # folded into the same one
        assert not returned.wait(0.3)  # never while an analysis runs or waits
        gate.set()
        waiting.result(60)
        assert returned.wait(60)
    finally:
        gate.set()
        pool.shutdown()
