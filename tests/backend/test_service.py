"""The job service end to end with a real server process: auth, submit/poll/download, cancel,
failures, worker crash, and the HTTP side staying responsive while a job runs."""
from __future__ import annotations

import io
import stat
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from service_helpers import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    srv = Server(tmp_path_factory.mktemp("svc") / "data", "--cancel-grace-s", "2")
    yield srv
    srv.stop()


def test_health_is_open_and_token_file_is_private(server: Server) -> None:
    response = httpx.get(f"{server.url}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["version"] == "0.1.0" and "render-orbit" in body["job_types"]
    assert stat.S_IMODE((server.data / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE(server.data.stat().st_mode) == 0o700
    assert len(server.token) >= 32
    assert server.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("method,path", [("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/jobs/0123456789abcdef"),
                                         ("GET", "/jobs/0123456789abcdef/results/x"),
                                         ("POST", "/jobs/0123456789abcdef/cancel"), ("GET", "/docs"),
                                         ("GET", "/nothing-here")])
def test_every_endpoint_but_health_needs_the_token(server: Server, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {server.token}"},
                    {"Authorization": f"Bearer {server.token}x"}):
        response = httpx.request(method, f"{server.url}{path}", headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert "token" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"


def test_submit_poll_download(server: Server) -> None:
    job = server.submit_ok({"steps": 4, "delay": 0.05},
                           files={"data": ("notes.txt", b"hello\n"), "extra": ("more.txt", b"world\n")})
    assert job["state"] in ("queued", "running") and job["type"] == "fixture-sleep"
    assert job["inputs"] == {"data": {"filename": "notes.txt", "size": 6}, "extra": {"filename": "more.txt", "size": 6}}
    done = server.wait(job["id"], ("done", "failed"))
    assert done["state"] == "done", done
    assert done["progress"] == 1.0 and done["message"] == "" and done["finished"] >= done["started"] >= done["created"]
    assert [(r["name"], r["file"]) for r in done["results"]] == [("echo", "echo.txt"), ("parts", "parts.zip")]
    echo = server.client.get(f"/jobs/{job['id']}/results/echo")
    assert echo.status_code == 200 and echo.content == b"HELLO\nWORLD\n"
    assert 'filename="echo.txt"' in echo.headers["content-disposition"]
    by_file = server.client.get(f"/jobs/{job['id']}/results/parts.zip")
    assert by_file.status_code == 200
    with zipfile.ZipFile(io.BytesIO(by_file.content)) as archive:
        assert sorted(archive.namelist()) == ["part0.txt", "part1.txt", "part2.txt"]
        assert archive.read("part2.txt") == b"part 2\n"
    listed = server.client.get("/jobs").json()["jobs"]
    assert job["id"] in [j["id"] for j in listed]
    inputs = server.data / "jobs" / job["id"] / "inputs"
    assert sorted(p.name for p in inputs.iterdir()) == ["data.txt", "extra.txt"]


def test_cancel_running_job_takes_effect_within_seconds(server: Server) -> None:
    job = server.submit_ok({"steps": 400, "delay": 0.05})
    running = server.wait(job["id"], ("running",), min_progress=0.01)
    assert 0 < running["progress"] < 1 and running["stage"].startswith("step ")
    start = time.monotonic()
    response = server.client.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 202 and response.json()["cancel_requested"] is True
    cancelled = server.wait(job["id"], ("cancelled",), timeout=5)
    elapsed = time.monotonic() - start
    assert elapsed < 3.0, elapsed
    assert cancelled["message"] == "cancelled by request"
    assert server.client.get(f"/jobs/{job['id']}/results/echo").status_code == 409
    # cancelling again is harmless; a finished job cannot be cancelled
    assert server.client.post(f"/jobs/{job['id']}/cancel").status_code == 200
    done = server.submit_ok({"steps": 1, "delay": 0.0})
    server.wait(done["id"], ("done",))
    conflict = server.client.post(f"/jobs/{done['id']}/cancel")
    assert conflict.status_code == 409 and "done" in conflict.json()["detail"]


def test_cancel_queued_job_and_one_job_at_a_time(server: Server) -> None:
    first = server.submit_ok({"steps": 400, "delay": 0.05})
    second = server.submit_ok({"steps": 1, "delay": 0.0})
    server.wait(first["id"], ("running",))
    time.sleep(0.5)
    assert server.job(second["id"])["state"] == "queued"  # the worker runs one job at a time
    response = server.client.post(f"/jobs/{second['id']}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert server.client.post(f"/jobs/{first['id']}/cancel").status_code == 202
    server.wait(first["id"], ("cancelled",), timeout=5)
    assert server.job(second["id"])["started"] is None


def test_job_that_stops_reporting_is_still_cancelled(server: Server) -> None:
    job = server.submit_ok({"fail": "hang"})
    server.wait(job["id"], ("running",))
    time.sleep(0.3)
    start = time.monotonic()
    assert server.client.post(f"/jobs/{job['id']}/cancel").status_code == 202
    cancelled = server.wait(job["id"], ("cancelled",), timeout=10)
    assert time.monotonic() - start < 6.0  # grace 2 s + the supervisor's check
    assert "worker process was stopped" in cancelled["message"]
    after = server.submit_ok({"steps": 2, "delay": 0.0})  # a fresh worker takes the next job
    assert server.wait(after["id"], ("done", "failed"), timeout=30)["state"] == "done"


def test_failures_have_readable_messages(server: Server) -> None:
    bad_input = server.submit_ok({"fail": "input"})
    bug = server.submit_ok({"fail": "bug", "fail_at": 1})
    failed = server.wait(bad_input["id"], ("done", "failed", "cancelled"))
    assert failed["state"] == "failed" and failed["message"] == "data.txt: fixture says the input is bad"
    crashed = server.wait(bug["id"], ("done", "failed", "cancelled"))
    assert crashed["state"] == "failed"
    assert crashed["message"].startswith("internal error: ZeroDivisionError: fixture bug")
    assert "Traceback" not in crashed["message"]
    log = (server.data / "jobs" / bug["id"] / "job.log").read_text()
    assert "Traceback" in log and "ZeroDivisionError" in log
    assert server.client.get(f"/jobs/{bug['id']}/results/echo").status_code == 409


def test_worker_crash_fails_the_job_and_a_new_worker_takes_over(server: Server) -> None:
    job = server.submit_ok({"fail": "exit"})
    failed = server.wait(job["id"], ("done", "failed"), timeout=15)
    assert failed["state"] == "failed" and "worker process stopped unexpectedly (exit code 3" in failed["message"]
    after = server.submit_ok({"steps": 2, "delay": 0.0})
    assert server.wait(after["id"], ("done", "failed"), timeout=30)["state"] == "done"


def test_http_stays_responsive_while_a_job_runs(server: Server) -> None:
    job = server.submit_ok({"steps": 40, "delay": 0.1, "busy": True})  # ~4 s of busy CPU in the worker
    server.wait(job["id"], ("running",), min_progress=0.05)
    latencies = []
    while server.job(job["id"])["state"] == "running" and len(latencies) < 60:
        for path in ("/health", f"/jobs/{job['id']}", "/jobs"):
            start = time.monotonic()
            assert server.client.get(path).status_code == 200
            latencies.append(time.monotonic() - start)
        time.sleep(0.05)
    assert len(latencies) >= 15, "the job ended before the HTTP side was measured"
    assert max(latencies) < 1.0, max(latencies)
    assert sorted(latencies)[len(latencies) // 2] < 0.2
    server.wait(job["id"], ("done",))
    assert not server.maps_torch()  # the HTTP process never loads torch


def test_uploads_never_land_outside_the_data_folder(server: Server, tmp_path: Path) -> None:
    before = {p for p in server.data.parent.iterdir()}
    job = server.submit_ok({"steps": 1, "delay": 0.0}, files={"data": ("../../escaped.txt", b"x\n")})
    assert job["inputs"]["data"]["filename"] == "escaped.txt"
    server.wait(job["id"], ("done",))
    assert sorted(p.name for p in (server.data / "jobs" / job["id"] / "inputs").iterdir()) == ["data.txt"]
    assert {p for p in server.data.parent.iterdir()} == before
    assert not list(server.data.parent.parent.glob("**/escaped.txt"))
    odd = server.submit_ok({"steps": 1, "delay": 0.0}, files={"data": ("..\\..\\x.t;x", b"y\n")})
    server.wait(odd["id"], ("done",))
    assert [p.name for p in (server.data / "jobs" / odd["id"] / "inputs").iterdir()] == ["data"]
