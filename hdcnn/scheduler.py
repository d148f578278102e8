"""The one bounded pool that runs analyses, sized to the machine, and the thread rule.

Why: torch runs each analysis on an OpenMP team of intra-op threads whose members spin and
wait for each other at every barrier. With more busy threads than cores (two torch threads
per analysis, an exam's four views at once, concurrent sessions, or just one other busy
process) every barrier waits for a thread that is not running: one image took 4.1-4.6 s
instead of 0.25 s beside a single busy process (issue 23). So:

- **The rule** (:func:`thread_plan`, the only owner): each analysis gets
  ``threads`` torch intra-op threads (1 by default, ``$HDCNN_THREADS_PER_ANALYSIS``), and
  at most ``usable cores // threads`` analyses run at once. With one thread per analysis
  torch starts no OpenMP team at all, so nothing spins when the CPU is shared, and the
  busy threads never outnumber the cores. Usable cores: the CPUs this process may run on
  (``os.sched_getaffinity``), capped by a cgroup CPU quota (containers).
- **The pool** (:class:`AnalysisPool`, one per process: :func:`shared_pool`): a FIFO queue
  and that many worker threads. The app's single images, its exam views, Grad-CAM and the
  CLI all go through it. A waiting caller sees its place in the queue and an estimate of
  when it starts (:meth:`Job.status`, :meth:`Job.wait` with a callback).

The app and the CLI are thin clients: neither sets thread counts itself.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

#: Environment variable: torch intra-op threads per analysis (default 1).
THREADS_ENV = "HDCNN_THREADS_PER_ANALYSIS"
#: Torch intra-op threads per analysis unless :data:`THREADS_ENV` says otherwise.
DEFAULT_THREADS = 1
#: Weight of the newest analysis in the running mean of analysis times (for the estimate).
MEAN_WEIGHT = 0.3
#: How often :meth:`Job.wait` looks at the job's place in the queue (seconds).
POLL_S = 0.1

T = TypeVar("T")


# ----------------------------------------------------------------------------- the rule


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in cores, or None when there is none.

    Reads cgroup v2 ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) or cgroup v1
    ``cpu/cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` (quota -1: none) under ``root``: the
    process's own cgroup inside a container. Unreadable or malformed files count as no quota.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for v1 in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


def usable_cores() -> int:
    """CPUs this process may run on (affinity mask), capped by its cgroup quota; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        cores = min(cores, int(quota))  # 1.5 CPUs of quota: one analysis at a time
    return max(1, cores)


@dataclass(frozen=True)
class ThreadPlan:
    """How analyses use the CPU: ``workers x threads <= cores``.

    Attributes:
        cores: usable cores (:func:`usable_cores`).
        threads: torch intra-op threads of one analysis.
        workers: analyses that run at once (the pool's worker threads).
    """

    cores: int
    threads: int
    workers: int


def threads_per_analysis() -> int:
    """``$HDCNN_THREADS_PER_ANALYSIS`` or :data:`DEFAULT_THREADS`.

    Raises:
        ValueError: the variable is set but not a whole number of at least 1.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return DEFAULT_THREADS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{THREADS_ENV} must be a whole number of at least 1, got {raw!r}")
    return value


def thread_plan(cores: int | None = None, threads: int | None = None) -> ThreadPlan:
    """THE rule: ``threads`` per analysis (never more than the cores), and as many analyses
    at once as fit in the cores without sharing one.

    Args:
        cores: usable cores (default :func:`usable_cores`).
        threads: torch threads per analysis (default :func:`threads_per_analysis`).

    Returns:
        The :class:`ThreadPlan`; ``workers * threads <= cores`` (at least one worker).
    """
    cores = max(1, usable_cores() if cores is None else int(cores))
    threads = threads_per_analysis() if threads is None else int(threads)
    threads = max(1, min(threads, cores))
    return ThreadPlan(cores=cores, threads=threads, workers=max(1, cores // threads))


def set_torch_threads(threads: int) -> None:
    """Torch intra-op threads for the calling thread and for threads started later.

    ``torch.set_num_threads`` stores the process-wide value and sets the OpenMP count of the
    calling thread only; a thread that already ran torch keeps its own count. So each of the
    pool's workers calls this when it starts, before it runs anything.
    """
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def configure_process(threads: int) -> None:
    """Process-wide settings for analyses of ``threads`` threads each.

    - torch intra-op threads of the calling thread (:func:`set_torch_threads`);
    - one inter-op thread (analyses never fork torch work, and a pool of idle inter-op
      threads per core only adds threads); torch refuses the change once inter-op work ran
      or after it was set: then it is left as it is;
    - OpenCV's own thread pool (resizes, filters of the preprocessing; pthreads in the
      wheels) to the same count: by default it adds a thread per core beside the workers.
    """
    import cv2
    import torch

    set_torch_threads(threads)
    try:
        if torch.get_num_interop_threads() != 1:
            torch.set_num_interop_threads(1)
    except RuntimeError:  # already started or set: keep it
        log.debug("torch inter-op threads left at %d", torch.get_num_interop_threads())
    cv2.setNumThreads(threads)


# ----------------------------------------------------------------------------- the queue


@dataclass(frozen=True)
class QueueStatus:
    """Where a job stands, as its owner is told.

    Attributes:
        position: 0 when it runs or has finished; ``n >= 1``: ``n``-th in line (``n - 1``
            jobs wait before it and every worker is busy).
        running: jobs running now (all sessions).
        waiting: jobs waiting now (all sessions).
        workers: jobs that run at once.
        eta_s: estimated seconds until it starts (``ceil(position / workers)`` x the running
            mean time of a job), None before any job finished or when it has started.
    """

    position: int
    running: int
    waiting: int
    workers: int
    eta_s: float | None = None

    @property
    def queued(self) -> bool:
        return self.position > 0

    def describe(self, what: str = "Your analysis") -> str:
        """One sentence for the user, e.g. ``"Your analysis is queued: number 3 in line ..."``
        (``"next in line"`` for position 1)."""
        if not self.queued:
            return f"{what} is running."
        eta = "" if self.eta_s is None else f"; it should start in about {self.eta_s:.0f} s"
        if self.eta_s is not None and self.eta_s < 1:
            eta = "; it should start within a second"
        place = "next" if self.position == 1 else f"number {self.position}"
        running = f"{self.running} {'analysis' if self.running == 1 else 'analyses'} running"
        return (
            f"{what} is queued: {place} in line ({running}, {self.workers} at a time on this "
            f"server){eta}."
        )


class Job(Generic[T]):
    """One call submitted to an :class:`AnalysisPool`.

    ``future`` is a :class:`concurrent.futures.Future`: ``result()`` returns the value or
    raises the call's own exception.
    """

    def __init__(self, pool: AnalysisPool, call: Callable[[], T]) -> None:
        self.pool = pool
        self.call: Callable[[], T] | None = call
        self.future: futures.Future[T] = futures.Future()

    def status(self) -> QueueStatus:
        """Its place in the queue now."""
        return self.pool._status(self)

    def done(self) -> bool:
        return self.future.done()

    def cancel(self) -> bool:
        """Take it out of the queue if it has not started (True when it will never run)."""
        return self.pool._cancel(self)

    def result(self, timeout: float | None = None) -> T:
        """The call's value; raises its exception (or ``TimeoutError`` after ``timeout``)."""
        return self.future.result(timeout)

    def wait(
        self, on_status: Callable[[QueueStatus], None] | None = None, *, poll_s: float = POLL_S
    ) -> T:
        """Wait in the calling thread, telling ``on_status`` where the job stands.

        ``on_status`` is called at once, then each time the job's place in line changes
        (it moved up, or started while this was waiting), in the caller's thread (a
        Streamlit script may draw in it). Checked every ``poll_s`` seconds.

        Returns:
            The call's value.

        Raises:
            Whatever the call raised; ``CancelledError`` when it was cancelled.
        """
        last: int | None = None
        while True:
            if on_status is not None:
                status = self.status()
                if status.position != last:
                    last = status.position
                    on_status(status)
            try:
                return self.future.result(timeout=poll_s)
            except futures.TimeoutError:
                continue


class AnalysisPool:
    """A FIFO queue of calls and ``workers`` threads that run them, ``threads`` torch
    threads each (see the module docstring).

    Args:
        workers: calls that run at once (>= 1).
        threads: torch intra-op threads of each worker (>= 1).
        name: worker thread name prefix.
    """

    def __init__(self, workers: int, *, threads: int = 1, name: str = "hdcnn-analysis") -> None:
        if workers < 1 or threads < 1:
            raise ValueError(f"workers and threads must be >= 1, got {workers} and {threads}")
        self.workers = workers
        self.threads = threads
        self._cond = threading.Condition()
        self._queue: deque[Job[Any]] = deque()
        self._running = 0
        self._peak = 0
        self._finished = 0
        self._mean_s: float | None = None
        self._closed = False
        configure_process(threads)
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- public

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Job[T]:
        """Queue ``fn(*args, **kwargs)``; returns its :class:`Job` at once."""
        job: Job[T] = Job(self, partial(fn, *args, **kwargs))
        with self._cond:
            if self._closed:
                raise RuntimeError("the analysis pool is shut down")
            self._queue.append(job)
            self._cond.notify()
        return job

    @property
    def busy(self) -> bool:
        """Whether a call runs or waits in line."""
        with self._cond:
            return self._running > 0 or bool(self._queue)

    @property
    def peak_running(self) -> int:
        """The most calls that ever ran at once in this pool."""
        return self._peak

    @property
    def finished(self) -> int:
        """Calls finished so far (with a value or an exception)."""
        return self._finished

    def shutdown(self, *, cancel: bool = True) -> None:
        """Stop the workers once they are idle; ``cancel`` drops the calls still waiting."""
        with self._cond:
            self._closed = True
            if cancel:
                while self._queue:
                    self._queue.popleft().future.cancel()
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()

    # -- workers

    def _work(self) -> None:
        set_torch_threads(self.threads)
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                if not job.future.set_running_or_notify_cancel():
                    continue
                self._running += 1
                self._peak = max(self._peak, self._running)
            seconds = self._run(job)
            del job  # an analysis is large: the worker keeps no reference to the last one
            with self._cond:
                self._running -= 1
                self._finished += 1
                mean = self._mean_s
                self._mean_s = seconds if mean is None else mean + MEAN_WEIGHT * (seconds - mean)

    @staticmethod
    def _run(job: Job[Any]) -> float:
        """Run one job into its future; returns the seconds it took."""
        start = time.perf_counter()
        call, job.call = job.call, None  # the job no longer holds its input (file bytes)
        assert call is not None, "a job runs once"
        try:
            job.future.set_result(call())
        except BaseException as exc:  # the caller gets it from the future
            job.future.set_exception(exc)
        return time.perf_counter() - start

    def _status(self, job: Job[Any]) -> QueueStatus:
        with self._cond:
            try:
                position = self._queue.index(job) + 1
            except ValueError:
                position = 0
            eta = None
            if position and self._mean_s is not None:
                eta = math.ceil(position / self.workers) * self._mean_s
            return QueueStatus(position, self._running, len(self._queue), self.workers, eta)

    def _cancel(self, job: Job[Any]) -> bool:
        with self._cond:
            try:
                self._queue.remove(job)
            except ValueError:
                return job.future.cancelled()
            return job.future.cancel()


_SHARED: AnalysisPool | None = None
_SHARED_LOCK = threading.Lock()


def shared_pool() -> AnalysisPool:
    """The process's analysis pool, built on first use by :func:`thread_plan`.

    Every analysis of the app (images, exam views, Grad-CAM) and of ``python -m hdcnn
    predict`` runs in it, so they never add up to more busy threads than cores. A call
    running in the pool must not wait for another job of it (with every worker busy, it
    would wait for ever).
    """
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            plan = thread_plan()
            _SHARED = AnalysisPool(plan.workers, threads=plan.threads)
            log.debug(
                "analysis pool: %d worker(s) x %d torch thread(s) (%d usable cores)",
                plan.workers,
                plan.threads,
                plan.cores,
            )
        return _SHARED
