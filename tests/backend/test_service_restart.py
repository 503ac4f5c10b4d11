"""Restart recovery with real server processes on one data folder."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from service_helpers import Server


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_killed_backend_leaves_interrupted_job_and_queued_job_runs_after_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Server(data)
    try:
        finished = first.submit_ok({"steps": 1, "delay": 0.0})
        first.wait(finished["id"], ("done",))
        running = first.submit_ok({"steps": 600, "delay": 0.05})
        queued = first.submit_ok({"steps": 2, "delay": 0.0})
        first.wait(running["id"], ("running",), min_progress=0.01)
        workers = first.child_pids()
        assert len(workers) == 1
        first.kill()  # kill -9: no chance to tidy up
    finally:
        first.stop()
    deadline = time.monotonic() + 5
    while _alive(workers[0]) and time.monotonic() < deadline:  # the orphaned worker sees its stdin close
        time.sleep(0.05)
    assert not _alive(workers[0]), "the worker outlived its server"

    second = Server(data)
    try:
        assert second.token == first.token  # the token survives a restart
        assert any("1 job(s) marked interrupted" in line for line in second.lines)
        listed = {j["id"]: j for j in second.client.get("/jobs").json()["jobs"]}
        assert set(listed) == {finished["id"], running["id"], queued["id"]}
        interrupted = listed[running["id"]]
        assert interrupted["state"] == "interrupted"
        assert "backend stopped while this job was running" in interrupted["message"]
        assert listed[finished["id"]]["state"] == "done"
        assert second.client.get(f"/jobs/{finished['id']}/results/echo").content == b"HELLO\n"
        assert second.wait(queued["id"], ("done", "failed"), timeout=30)["state"] == "done"
        time.sleep(0.5)
        assert second.job(running["id"])["state"] == "interrupted"
    finally:
        second.stop()


def test_stopping_the_backend_interrupts_its_running_job(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(data)
    job = server.submit_ok({"steps": 600, "delay": 0.05})
    server.wait(job["id"], ("running",), min_progress=0.01)
    workers = server.child_pids()
    assert server.stop() in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown
    assert not any(_alive(pid) for pid in workers)
    again = Server(data)
    try:
        assert not any("marked interrupted" in line for line in again.lines)  # settled at shutdown already
        stopped = again.job(job["id"])
        assert stopped["state"] == "interrupted" and "backend was stopped" in stopped["message"]
    finally:
        again.stop()


def test_one_backend_per_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(data)
    try:
        with pytest.raises(RuntimeError, match="another Orbitex backend is already using the data folder"):
            Server(data)
        assert server.client.get("/jobs").status_code == 200
    finally:
        server.stop()


def test_token_file_with_loose_permissions_is_replaced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    leaked = "x" * 43
    (data / "token").write_text(leaked)
    os.chmod(data / "token", 0o644)
    server = Server(data)
    try:
        assert server.token != leaked and (data / "token").stat().st_mode & 0o777 == 0o600
        assert server.client.get("/jobs").status_code == 200
    finally:
        server.stop()
