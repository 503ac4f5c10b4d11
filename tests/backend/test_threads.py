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


def test_configure_makes_openmp_threads_wait_passively_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    threads.configure(1)
    assert threads.os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.configure(1)
    assert threads.os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_cli_and_worker_import_no_openmp_before_configure():
    """OMP_WAIT_POLICY only counts if libgomp is not loaded yet when configure runs: building every
    verb's parser and params, and importing the worker, must not import torch (or numba) first."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\n"
            "from backend import cli, pipelines\n"
            "import backend.service.worker\n"
            "for verb in pipelines.PIPELINES:\n"
            "    cli.build_parser(verb)\n"
            "    pipelines.parse_params(pipelines.load(verb).Params, {})\n"
            "print(sorted(m for m in ('torch', 'numba', 'cv2') if m in sys.modules))\n")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_serve_passes_threads_to_the_worker(tmp_path):
    """`serve --threads 1`: the job runs with 1 torch thread, and the worker's log says it was asked
    for (not picked from the free cores, as without the flag)."""
    from service_helpers import Server

    for args, expected in ((("--threads", "1"), "threads: 1 (--threads 1)"), ((), "(the free cores)")):
        data = tmp_path / f"data{len(args)}"
        server = Server(data, *args)
        try:
            job = server.submit_ok({"steps": 1, "delay": 0.0, "report_threads": True})
            done = server.wait(job["id"], ("done", "failed"), timeout=60)
            assert done["state"] == "done", done
            used = server.client.get(f"/jobs/{job['id']}/results/threads").text
        finally:
            server.stop()
        if args:
            assert used == "1"
        assert expected in (data / "logs" / "worker.log").read_text()


def test_serve_threads_is_the_local_engines(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for args, message in ((["--engine", "ray", "--threads", "2"], "--threads is the local engine's"),
                          (["--threads", "-1"], "--threads must be positive")):
        out = subprocess.run([sys.executable, "-m", "backend", "serve", "--data", str(tmp_path / "d"), *args],
                             cwd=root, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and message in out.stderr, out.stderr


def test_cli_job_steps_down_when_another_process_starts(monkeypatch, tmp_path, caplog):
    """`python -m backend VERB` with automatic threads re-picks them while the job runs (as the
    worker does): synthetic readings with another process busy on 1.5 of 2 cores -> 1 thread."""
    import trimesh

    from backend import cli

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "free_cores", lambda: 2)  # idle when the job starts
    monkeypatch.setattr(threads, "REBALANCE_EVERY_S", 0.0)
    clock = iter(range(1, 10_000))

    def loaded() -> tuple[float, float, float, float]:  # 1.5 busy cores per 2 s, none of them the job's
        t = next(clock)
        return 300.0 * t, 400.0 * t, 0.0, 2.0 * t

    monkeypatch.setattr(threads, "_machine_and_own", loaded)
    notes = threads.log  # the CLI adds a stderr handler to it: leave none pointing at this test's capture
    monkeypatch.setattr(notes, "handlers", list(notes.handlers))
    caplog.set_level("INFO", logger=notes.name)
    mesh = tmp_path / "box.glb"
    trimesh.creation.box().export(mesh)
    assert cli.main(["render-orbit", str(mesh), "--out", str(tmp_path / "out"), "--frames", "2", "--size", "32"]) == 0
    assert threads.torch_threads() == 1
    assert "threads: 2 -> 1 (other processes keep 1.5 of 2 cores busy)" in caplog.text
