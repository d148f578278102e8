"""Process-wide settings of glibc's allocator for CPU inference (no-ops elsewhere).

One owner for the ``mallopt`` calls of the project:

- :func:`reuse_freed_memory`: glibc hands every allocation above its mmap threshold (128 KB,
  growing up to 32 MB as big blocks are freed) straight to the kernel and back, so each
  network pass page-faults its activations into fresh memory. Keeping freed blocks of up to
  32 MB in the heap avoids that (the classify column of ``benchmarks/bench_predict.py``).
  :func:`load_cascade <hdcnn.cascade.load_cascade>` calls it.
- :func:`limit_malloc_arenas`: at most a few arenas for the app's many script threads.
- :func:`return_free_memory`: hand freed heap pages back to the system on demand;
  :class:`IdleCleaner` does it in its own thread once the process has nothing to analyse.
- :func:`freeze_long_lived`: take what lives as long as the process (modules, the loaded
  model) out of the garbage collector's full passes, so that :func:`return_free_memory`
  stays cheap.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
import time
from collections.abc import Callable

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: Allocations up to this size come from the heap and are reused (glibc's own maximum).
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
#: Freed memory kept at the top of the heap before glibc trims it on its own.
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


def _mallopt(param: int, value: int) -> bool:
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to set
        return bool(ctypes.CDLL("libc.so.6").mallopt(param, int(value)))
    return False


def reuse_freed_memory() -> bool:
    """Keep freed blocks of up to :data:`MMAP_THRESHOLD_BYTES` for reuse (see the module
    docstring). Returns whether glibc took the settings. Idempotent."""
    mmap_ok = _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    trim_ok = _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    return mmap_ok and trim_ok


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """At most ``arenas`` glibc malloc arenas for the threads that analyse uploads.

    Streamlit runs every script run in a new thread; glibc gives threads their own arenas
    (up to 8 per core) and keeps their freed pages resident, so memory freed after a session
    ended stayed with the process (+100-400 MB after 8-32 sessions, measured by
    ``tests/e2e/test_load.py``). Two arenas return it (within ~10 MB) at no measurable cost.
    Same as starting the server with ``MALLOC_ARENA_MAX=2``.
    """
    return _mallopt(_M_ARENA_MAX, arenas)


def return_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the system (glibc ``malloc_trim``):
    the arenas of the threads that analysed images otherwise keep them resident.

    The full collection walks every object the collector tracks: ~0.2 s with the app's
    ~440,000 objects of torch, Streamlit and pandas, once per finished session (a third of
    the app's CPU per verdict, ``benchmarks/bench_load.py --app``), unless
    :func:`freeze_long_lived` took them out of its sight.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def freeze_long_lived() -> int:
    """Collect garbage once, then move every object alive now into the collector's permanent
    generation (``gc.freeze``): later full collections skip them. Call it once the objects
    that live as long as the process exist (imports done, model loaded). Objects frozen are
    still freed when their reference count drops to zero; only cycles among them stay.

    Returns:
        How many objects are frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class IdleCleaner:
    """:func:`return_free_memory` in a thread of its own, once ``busy()`` has been false for
    ``idle_s`` seconds.

    The app asks for it each time a browser session ends. Run there and then, it cost every
    finished session a full garbage collection and a ``malloc_trim`` on the server's event
    loop, and the trim handed back the very pages the next analysis faults in again
    (:func:`reuse_freed_memory`). Here the requests made while analyses run, wait, or follow
    each other within ``idle_s`` are folded into one, done once the server is idle, off the
    event loop.

    Args:
        busy: whether work is running or waiting (e.g. ``AnalysisPool.busy``).
        idle_s: how long ``busy()`` must stay false before memory is returned.
        poll_s: how often a pending request looks at ``busy()``.
    """

    def __init__(
        self, busy: Callable[[], bool], *, idle_s: float = 2.0, poll_s: float = 0.25
    ) -> None:
        self._busy = busy
        self._idle_s = idle_s
        self._poll_s = poll_s
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._asked = time.monotonic()
        self.runs = 0  # how many times memory was returned (for tests and logs)

    def request(self) -> None:
        """Return free memory once the server is idle (requests until then are folded)."""
        self._asked = time.monotonic()
        self._wanted.set()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="hdcnn-free-memory", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            quiet_since = self._asked
            while True:
                now = time.monotonic()
                if self._busy():
                    quiet_since = now
                elif now - max(quiet_since, self._asked) >= self._idle_s:
                    break
                time.sleep(self._poll_s)
            self._wanted.clear()
            return_free_memory()
            self.runs += 1
