"""How many CPU threads a job uses: the one place that decides it, for torch, OpenCV, numba and the
BLAS/OpenMP pools under numpy and scipy. The CLI and the service's worker call `configure` before
every pipeline run.

Why: on a small shared machine, libraries that each start one thread per core fight over the cores
whenever anything else runs (OpenMP threads spin waiting for each other), and a job slows down 3x
instead of sharing. So a job takes the cores it may use (the process's CPU affinity) minus those
other processes keep busy when it starts (measured over a fraction of a second), at least one; or
exactly `--threads` when given.

Idle OpenMP threads (torch's and MKL's pool, numba's omp layer: all libgomp here) sleep instead of
spinning (OMP_WAIT_POLICY=PASSIVE, read once when libgomp loads, so `configure` sets it before it
first imports torch; the CLI and the worker import no torch before that): spinning threads burn a
core that another process, or our own next parallel region, needs. Beside a busy process a 480k-element
multiply on 2 threads took 3-7 ms spinning vs 0.2 ms passive (0.2 ms on 1 thread).
"""
from __future__ import annotations

import logging
import math
import os
import time

from .errors import InputError

_blas_limits = None  # threadpoolctl's limiter, kept so the limit lasts
REBALANCE_EVERY_S = 2.0
WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")  # a value the user set wins
log = logging.getLogger("orbitex")


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask; all of them where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def free_cores(cores: int | None = None, sample_s: float = 0.3) -> int:
    """Cores not kept busy by other processes, at least one: usable cores minus the busy share of
    the machine over the next `sample_s` seconds (/proc/stat; this process idles meanwhile), or
    minus the 1-minute load average where /proc/stat is missing (it lags a minute behind)."""
    cores = usable_cores() if cores is None else cores
    busy = _busy_cores(sample_s)
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:
            return cores
    return max(1, min(cores, math.floor(cores - busy + 0.5)))


def _busy_cores(sample_s: float) -> float | None:
    def snapshot() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                values = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    first = snapshot()
    time.sleep(sample_s)
    second = snapshot()
    if first is None or second is None or second[0] <= first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    return (os.cpu_count() or 1) * (total - idle) / total


def configure(threads: int | None = None) -> int:
    """Set every thread pool to `threads` (None or 0: `free_cores()`); returns the number used."""
    if threads is not None and threads < 0:
        raise InputError(f"--threads must be positive (or 0 for what is free), got {threads}")
    os.environ.setdefault(*WAIT_POLICY)  # before the first `import torch` loads libgomp (see the module doc)
    n = _set(free_cores() if not threads else min(int(threads), usable_cores()))
    log.info(f"threads: {n} ({f'--threads {threads}' if threads else 'the free cores'})")
    return n


def _set(n: int) -> int:
    global _blas_limits
    # runtime calls, not OMP_NUM_THREADS & co: those are read once at load and would cap later jobs;
    # Mesa's llvmpipe (moderngl's EGL rendering) reads its variable when a process's first context starts
    os.environ["LP_NUM_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:
        pass
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    from threadpoolctl import threadpool_limits

    _blas_limits = threadpool_limits(limits=n)
    return n


def _machine_and_own() -> tuple[float, float, float, float] | None:
    """(busy jiffies of all cores, all jiffies, this process's CPU seconds, wall seconds)."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    own = os.times()
    return sum(values) - idle, sum(values), own.user + own.system, time.monotonic()


class Rebalancing:
    """A Progress that passes reports on and, every REBALANCE_EVERY_S while a job runs, sets the
    thread pools again to the cores other processes leave free (their share of the machine since
    the last check: all cores' busy time less this process's own), when that number changed. So a
    job that started on an idle machine steps down to one thread when another job starts beside
    it, and back up when it ends. Only for threads picked automatically (`--threads 0`)."""

    def __init__(self, progress, threads: int) -> None:  # type: ignore[no-untyped-def]
        self.progress, self.auto = progress, not threads
        self.cores = usable_cores()
        self.current = torch_threads()
        self.last = _machine_and_own()

    def __call__(self, fraction: float, stage: str) -> None:
        if self.auto and self.last is not None and time.monotonic() - self.last[3] >= REBALANCE_EVERY_S:
            self.rebalance()
        self.progress(fraction, stage)

    def rebalance(self) -> int:
        now = _machine_and_own()
        if now is None or self.last is None or now[1] <= self.last[1]:
            return self.current
        machine = (os.cpu_count() or 1) * (now[0] - self.last[0]) / (now[1] - self.last[1])
        own = (now[2] - self.last[2]) / max(now[3] - self.last[3], 1e-6)
        self.last = now
        free = max(1, min(self.cores, math.floor(self.cores - max(machine - own, 0.0) + 0.5)))
        if free != self.current:
            log.info(f"threads: {self.current} -> {free} (other processes keep {max(machine - own, 0.0):.1f} "
                     f"of {self.cores} cores busy)")
            self.current = _set(free)
        return self.current


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()
