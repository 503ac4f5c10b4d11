"""backend/threads.py: one call sets every thread pool; automatic threads follow the machine's load."""
from __future__ import annotations

import pytest

from backend import threads
from backend.errors import InputError


@pytest.fixture(autouse=True)
def restore_threads():
    import torch

    before = torch.get_num_threads()
    yield
    threads.configure(before)


def test_configure_sets_torch_opencv_numba_and_blas():
    import cv2
    import numba
    import torch
    from threadpoolctl import threadpool_info

    assert threads.configure(1) == 1
    assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1 and numba.get_num_threads() == 1
    assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert threads.configure(10_000) == threads.usable_cores()  # never more than the process may use
    assert 1 <= threads.configure(0) <= threads.usable_cores()
    with pytest.raises(InputError, match="--threads"):
        threads.configure(-1)


def test_rebalancing_follows_other_processes_and_passes_reports_on(monkeypatch):
    """Synthetic /proc/stat readings on 2 cores: another process busy on one core -> 1 thread; the
    job's own CPU time does not count as load; the machine idle again -> 2 threads."""
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    threads.configure(2)
    # (busy jiffies, all jiffies, own CPU s, wall s); 200 jiffies = 1 s of 2 cores at 100 Hz
    readings = iter([(0, 0, 0.0, 0.0),
                     (200, 400, 1.0, 2.0),  # machine 1 core busy, all of it this job: nothing else runs
                     (500, 800, 1.0, 4.0),  # 1.5 cores busy, none of it the job's: another process runs
                     (600, 1200, 2.0, 6.0),  # 0.5 busy, all of it the job's
                     (600, 1200, 2.0, 6.0)])
    monkeypatch.setattr(threads, "_machine_and_own", lambda: next(readings))
    seen = []
    watch = threads.Rebalancing(lambda f, s: seen.append((f, s)), threads=0)
    assert watch.rebalance() == 2
    assert watch.rebalance() == 1 and threads.torch_threads() == 1
    assert watch.rebalance() == 2 and threads.torch_threads() == 2
    fixed = threads.Rebalancing(lambda f, s: seen.append((f, s)), threads=2)
    fixed(0.5, "stage")  # --threads given: reports pass on, threads stay
    assert seen == [(0.5, "stage")] and not fixed.auto
