"""The analysis pool and the thread rule (``hdcnn.scheduler``). No timings: every ordering
is forced with events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from hdcnn import scheduler
from hdcnn.scheduler import AnalysisPool, QueueStatus, thread_plan

#: Generous bound for an event that must come (only reached when something is broken).
STUCK_S = 60


@pytest.fixture()
def pools() -> Iterator[list[AnalysisPool]]:
    """Pools made by a test, shut down after it (their queued calls cancelled)."""
    made: list[AnalysisPool] = []
    yield made
    for pool in made:
        pool.shutdown()
    scheduler.configure_process(1)  # the test suite's thread count (conftest)


def _pool(pools: list[AnalysisPool], workers: int, threads: int = 1) -> AnalysisPool:
    pool = AnalysisPool(workers, threads=threads)
    pools.append(pool)
    return pool


def _occupy(pool: AnalysisPool, gate: threading.Event):
    """A job that holds a worker until ``gate`` is set; returned once it runs."""
    started = threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(STUCK_S)

    job = pool.submit(hold)
    assert started.wait(STUCK_S)
    return job


# ----------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("cores", "threads", "expected"),
    [
        (2, 1, (1, 2)),  # this project's machine: two analyses of one thread
        (1, 1, (1, 1)),
        (8, 3, (3, 2)),  # 6 of 8 cores busy: never more threads than cores
        (2, 4, (2, 1)),  # more threads than cores: capped, one analysis
        (16, 1, (1, 16)),
    ],
)
def test_the_rule_never_gives_more_busy_threads_than_cores(
    cores: int, threads: int, expected: tuple[int, int]
) -> None:
    plan = thread_plan(cores=cores, threads=threads)
    assert (plan.threads, plan.workers) == expected
    assert plan.workers * plan.threads <= cores
    assert plan.cores == cores


def test_threads_per_analysis_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(scheduler.THREADS_ENV, raising=False)
    assert thread_plan(cores=4).threads == scheduler.DEFAULT_THREADS == 1
    monkeypatch.setenv(scheduler.THREADS_ENV, "2")
    assert thread_plan(cores=4) == scheduler.ThreadPlan(cores=4, threads=2, workers=2)
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(scheduler.THREADS_ENV, bad)
        with pytest.raises(ValueError, match=scheduler.THREADS_ENV):
            thread_plan(cores=4)


def test_usable_cores_follow_the_affinity_mask_and_the_cgroup_quota(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduler.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(scheduler, "cgroup_cpu_limit", lambda: None)
    assert scheduler.usable_cores() == 4
    monkeypatch.setattr(scheduler, "cgroup_cpu_limit", lambda: 2.5)
    assert scheduler.usable_cores() == 2  # a partial core is not a worker
    monkeypatch.setattr(scheduler, "cgroup_cpu_limit", lambda: 0.5)
    assert scheduler.usable_cores() == 1
    assert thread_plan().workers == 1


def test_cgroup_quota_v2_and_v1(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("max 100000\n")
    assert scheduler.cgroup_cpu_limit(v2) is None
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert scheduler.cgroup_cpu_limit(v2) == 1.5
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    assert scheduler.cgroup_cpu_limit(v1) is None
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("300000\n")
    assert scheduler.cgroup_cpu_limit(v1) == 3.0
    assert scheduler.cgroup_cpu_limit(tmp_path / "none") is None


def test_workers_run_torch_with_the_planned_thread_count(pools: list[AnalysisPool]) -> None:
    import cv2
    import torch

    for threads in (2, 1):
        pool = _pool(pools, 1, threads=threads)
        assert pool.submit(torch.get_num_threads).result(STUCK_S) == threads
        assert torch.get_num_threads() == threads  # the process's setting too
        assert cv2.getNumThreads() == threads


# ----------------------------------------------------------------------------- the pool


def test_never_more_than_workers_calls_at_once(pools: list[AnalysisPool]) -> None:
    pool = _pool(pools, 2)
    lock = threading.Lock()
    active = [0]
    most = [0]
    started = [threading.Event() for _ in range(2)]
    gate = threading.Event()

    def call(i: int) -> int:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        if i < 2:
            started[i].set()
            gate.wait(STUCK_S)
        with lock:
            active[0] -= 1
        return i

    jobs = [pool.submit(call, i) for i in range(10)]
    assert all(e.wait(STUCK_S) for e in started)
    # both workers are busy: the third call waits, first in line
    assert jobs[2].status().position == 1
    assert [j.status().position for j in jobs[2:]] == list(range(1, 9))
    gate.set()
    assert [j.result(STUCK_S) for j in jobs] == list(range(10))
    assert most[0] == 2
    assert pool.peak_running == 2
    assert pool.finished == 10


def test_a_waiting_caller_sees_its_place_in_line_move_up_in_order(
    pools: list[AnalysisPool],
) -> None:
    pool = _pool(pools, 1)
    gates = [threading.Event() for _ in range(3)]
    first = _occupy(pool, gates[0])
    ahead = [pool.submit(g.wait, STUCK_S) for g in gates[1:]]
    mine = pool.submit(lambda: "verdict")
    seen: list[QueueStatus] = []

    def on_status(status: QueueStatus) -> None:
        seen.append(status)
        if status.queued:  # let the call running now finish: the line moves up by one
            gates[3 - status.position].set()

    assert mine.wait(on_status) == "verdict"
    # told its place at once and each time it moved up (its start may come with its end)
    assert [s.position for s in seen][:3] == [3, 2, 1]
    assert all(not s.queued for s in seen[3:])
    assert seen[0].running == 1 and seen[0].waiting == 3 and seen[0].workers == 1
    assert seen[0].eta_s is None  # nothing finished yet: no estimate
    assert seen[1].eta_s is not None and seen[1].eta_s >= 0
    assert first.done() and all(j.done() for j in ahead)


def test_exceptions_reach_the_caller_and_the_pool_goes_on(pools: list[AnalysisPool]) -> None:
    pool = _pool(pools, 1)

    def broken() -> None:
        raise KeyError("no such view")

    with pytest.raises(KeyError, match="no such view"):
        pool.submit(broken).result(STUCK_S)
    with pytest.raises(KeyError):
        pool.submit(broken).wait(lambda status: None)
    assert pool.submit(sum, [1, 2, 3]).result(STUCK_S) == 6


def test_a_cancelled_job_never_runs_and_frees_its_place(pools: list[AnalysisPool]) -> None:
    pool = _pool(pools, 1)
    gate = threading.Event()
    running = _occupy(pool, gate)
    ran: list[str] = []
    left = pool.submit(ran.append, "left")
    stays = pool.submit(ran.append, "stays")
    assert stays.status().position == 2
    assert left.cancel()
    assert stays.status().position == 1
    assert not running.cancel()  # already running: it finishes
    gate.set()
    stays.result(STUCK_S)
    with pytest.raises(CancelledError):
        left.result(STUCK_S)
    assert ran == ["stays"]


def test_a_finished_job_no_longer_holds_its_input(pools: list[AnalysisPool]) -> None:
    pool = _pool(pools, 1)
    job = pool.submit(len, b"x" * 1000)
    assert job.result(STUCK_S) == 1000
    assert job.call is None


def test_the_shared_pool_is_one_per_process_and_follows_the_rule() -> None:
    pool = scheduler.shared_pool()
    assert scheduler.shared_pool() is pool
    plan = thread_plan()
    assert (pool.workers, pool.threads) == (plan.workers, plan.threads)


def test_the_queue_sentence() -> None:
    status = QueueStatus(position=3, running=2, waiting=4, workers=2, eta_s=1.6)
    text = status.describe()
    assert text.startswith("Your analysis is queued: number 3 in line")
    assert "2 analyses running, 2 at a time" in text and "about 2 s" in text
    assert "next in line" in QueueStatus(1, 2, 1, 2).describe("This view")
    assert "about" not in QueueStatus(1, 2, 1, 2).describe()
    assert "within a second" in QueueStatus(1, 2, 1, 2, 0.4).describe()
    assert not QueueStatus(0, 1, 0, 2).queued
