"""The Ray engine (`serve --engine ray`) on a Ray cluster of this machine: 2 CPUs, 2 logical GPUs.

One cluster for the module (Ray starts slowly on 2 cores); each test starts its own backend that
joins it. Real small jobs (render-orbit, complete) run two at a time; a killed Ray worker is run
again once (default policy) or interrupts its job; cancel works; an unreachable cluster leaves
the service answering and the jobs queued.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="ray is not installed (backend/requirements.txt pins it; build.py setup installs it)")

from ray_cluster import RayCluster  # noqa: E402
from service_helpers import FIXTURE_TYPE, REPO, Server  # noqa: E402

END = ("done", "failed", "cancelled", "interrupted")


@pytest.fixture(scope="module", autouse=True)
def ray_token(tmp_path_factory: pytest.TempPathFactory):
    """Ray's token auth, as the README says, with a token of the tests' own (clusters and backends inherit it)."""
    token = tmp_path_factory.mktemp("ray-auth") / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "token")
        env.setenv("RAY_AUTH_TOKEN_PATH", str(token))
        yield


@pytest.fixture(scope="module")
def cluster(ray_token):
    ray_cluster = RayCluster(cpus=2, gpus=2, env={"ORBITEX_EXTRA_PIPELINES": f"{FIXTURE_TYPE}=service_fixture_pipeline"})
    yield ray_cluster
    ray_cluster.stop()


def ray_server(data: Path, cluster: RayCluster, *args: str) -> Server:
    return Server(data, "--engine", "ray", "--ray-address", cluster.address, "--ray-data", "shared", *args)


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _task_pid(job_id: str, timeout: float = 60.0) -> int:
    """The Ray worker process running a job's task (Ray titles it after the task's name)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if job_id.encode() in cmdline.read_bytes() and b"ray::" in cmdline.read_bytes():
                    return int(cmdline.parent.name)
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no Ray worker process runs job {job_id}")


def _box_glb() -> bytes:
    import trimesh

    return trimesh.creation.box(extents=(1.0, 0.6, 0.4)).export(file_type="glb")


def _front_ply() -> bytes:
    import numpy as np
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    front = sphere.vertices[sphere.vertices[:, 2] > 0.0]
    return trimesh.PointCloud(np.asarray(front)).export(file_type="ply")


def test_batch_of_real_jobs_runs_two_at_a_time(tmp_path: Path, cluster: RayCluster) -> None:
    server = ray_server(tmp_path / "data", cluster, "--ray-data", "object-store")  # the last --ray-data wins
    try:
        renders = [server.submit_ok({"frames": 4, "size": 64}, files={"mesh": ("box.glb", _box_glb())},
                                    job_type="render-orbit") for _ in range(2)]
        completes = [server.submit_ok({"resolution": 32, "direction": "0,0,-1"}, files={"scan": ("front.ply", _front_ply())},
                                      job_type="complete") for _ in range(2)]
        jobs = [server.wait(j["id"], END, timeout=240) for j in renders + completes]
        assert [j["state"] for j in jobs] == ["done"] * 4, [j["message"] for j in jobs]
        assert all(j["node"] == socket.gethostname() for j in jobs)
        spans = [(_stamp(j["started"]), _stamp(j["finished"])) for j in jobs]
        # jobs running when each one started; `finished` is stamped once the engine has the result back,
        # which on this loaded machine can come a second after Ray gave the worker to the next job
        at_once = max(sum(s <= t < e - 1.5 for s, e in spans) for t, _ in spans)
        assert at_once == 2, spans  # two workers (2 CPUs, 2 GPUs), never more
        files = {r["file"]: r for r in jobs[0]["results"]}
        viewset = server.client.get(files["viewset.zip"]["url"]).content
        with zipfile.ZipFile(io.BytesIO(viewset)) as archive:
            assert any(n.endswith("transforms.json") for n in archive.namelist())
        glb = next(r for r in jobs[2]["results"] if r["file"].endswith(".glb"))
        assert server.client.get(glb["url"]).content[:4] == b"glTF"
        assert not server.maps_torch()
    finally:
        server.stop()


def test_killed_worker_runs_the_job_once_more_then_interrupts(tmp_path: Path, cluster: RayCluster) -> None:
    server = ray_server(tmp_path / "data", cluster)
    try:
        once = server.submit_ok({"steps": 40, "delay": 0.1})
        server.wait(once["id"], ("running",), min_progress=0.05, timeout=60)
        os.kill(_task_pid(once["id"]), signal.SIGKILL)
        again = server.wait(once["id"], END, timeout=90)
        assert again["state"] == "done", again
        assert again["message"].startswith("ran twice: its Ray worker on") and "WorkerCrashedError" in again["message"]
        assert server.client.get(f"/jobs/{once['id']}/results/echo").content == b"HELLO\n"

        twice = server.submit_ok({"steps": 400, "delay": 0.1})
        for _ in range(2):
            server.wait(twice["id"], ("running",), min_progress=0.02, timeout=60)
            os.kill(_task_pid(twice["id"]), signal.SIGKILL)
            time.sleep(1.0)
        lost = server.wait(twice["id"], END, timeout=60)
        assert lost["state"] == "interrupted" and "was lost" in lost["message"], lost
    finally:
        server.stop()
    strict = ray_server(tmp_path / "data", cluster, "--on-worker-lost", "interrupt")
    try:
        job = strict.submit_ok({"steps": 400, "delay": 0.1})
        strict.wait(job["id"], ("running",), min_progress=0.02, timeout=60)
        os.kill(_task_pid(job["id"]), signal.SIGKILL)
        lost = strict.wait(job["id"], END, timeout=60)
        assert lost["state"] == "interrupted" and "ran twice" not in lost["message"], lost
    finally:
        strict.stop()


def test_cancel_running_hung_and_queued_jobs(tmp_path: Path, cluster: RayCluster) -> None:
    server = ray_server(tmp_path / "data", cluster, "--cancel-grace-s", "3")
    try:
        running = server.submit_ok({"steps": 600, "delay": 0.1})
        hung = server.submit_ok({"fail": "hang", "fail_at": 1, "steps": 3})
        waiting = server.submit_ok({"steps": 600, "delay": 0.1})
        queued = server.submit_ok({"steps": 600, "delay": 0.1})
        server.wait(running["id"], ("running",), min_progress=0.01, timeout=60)
        server.wait(hung["id"], ("running",), min_progress=0.0, timeout=60)
        time.sleep(1.0)
        # both workers busy: one more job waits in Ray's queue, the rest stay queued in the store
        assert server.job(waiting["id"])["stage"].startswith("waiting for a Ray worker")
        assert server.job(queued["id"])["state"] == "queued"
        assert server.client.post(f"/jobs/{queued['id']}/cancel").json()["state"] == "cancelled"
        start = time.monotonic()
        for job in (running, hung, waiting):
            server.client.post(f"/jobs/{job['id']}/cancel")
        for job in (running, hung, waiting):
            ended = server.wait(job["id"], END, timeout=30)
            assert ended["state"] == "cancelled" and ended["message"].startswith("cancelled by request"), ended
        assert time.monotonic() - start < 15.0
        after = server.submit_ok({"steps": 2, "delay": 0.0})  # the workers are free again
        assert server.wait(after["id"], END, timeout=60)["state"] == "done"
    finally:
        server.stop()


def test_unreachable_cluster_leaves_the_service_answering_and_jobs_queued(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there
    server = Server(tmp_path / "data", "--engine", "ray", "--ray-address", f"127.0.0.1:{port}")
    try:
        assert server.client.get("/health").json()["ok"]
        job = server.submit_ok({"steps": 1, "delay": 0.0})
        time.sleep(3.0)
        assert server.job(job["id"])["state"] == "queued"
        log = (tmp_path / "data" / "logs" / "ray-engine.log").read_text()
        assert f"waiting for the Ray cluster at 127.0.0.1:{port}" in log
    finally:
        server.stop()
    again = Server(tmp_path / "data")  # the local engine runs what the Ray engine never could
    try:
        assert again.wait(job["id"], END, timeout=60)["state"] == "done"
    finally:
        again.stop()


@pytest.mark.writes_invalid_gltf  # the broken input
def test_batch_cli_over_a_folder_on_the_ray_engine(tmp_path: Path, cluster: RayCluster) -> None:
    folder = tmp_path / "meshes"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.glb").write_bytes(_box_glb())
    (folder / "broken.glb").write_bytes(b"glTF not really")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "backend", "batch", str(folder), "--job", "render-orbit", "--out", str(out),
                          "--param", "frames=2", "--param", "size=32", "--engine", "ray", "--ray-address", cluster.address],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr  # one input is broken
    lines = [line for line in run.stdout.splitlines() if line.startswith("[")]
    assert "3/4 done, 1 failed, 0 running, 0 queued" in lines[-1] and f"{socket.gethostname()}: 3 done 1 failed" in lines[-1]
    assert any(" 2 running" in line for line in lines), lines  # two at a time on the cluster's two CPUs
    assert "broken.glb: failed: mesh.glb: cannot read the mesh" in run.stderr
    for name in ("a", "b", "c"):
        assert (out / name / "viewset.zip").is_file() and (out / name / "contact_sheet.png").is_file()
    summary = json.loads((out / "batch.json").read_text())
    assert [j["state"] for j in summary] == ["done", "done", "failed", "done"]  # a, b, broken, c


def test_cluster_gone_interrupts_running_jobs_and_keeps_queued_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_gcs_rpc_server_reconnect_timeout_s", "5")  # Ray's default: a driver waits 60 s for its GCS
    doomed = RayCluster(cpus=1, gpus=0, env={"ORBITEX_EXTRA_PIPELINES": f"{FIXTURE_TYPE}=service_fixture_pipeline"})
    server = Server(tmp_path / "data", "--engine", "ray", "--ray-address", doomed.address)
    try:
        running = server.submit_ok({"steps": 600, "delay": 0.1})
        server.wait(running["id"], ("running",), min_progress=0.01, timeout=60)
        queued = [server.submit_ok({"steps": 2}) for _ in range(2)]
        doomed.kill()
        lost = server.wait(running["id"], END, timeout=60)
        assert lost["state"] == "interrupted" and "Ray engine process stopped" in lost["message"], lost
        assert server.client.get("/health").json()["ok"]
        time.sleep(2.0)
        # the one claimed ahead (waiting in Ray's queue) never ran: it went back to the queue with the rest
        assert [server.job(j["id"])["state"] for j in queued] == ["queued", "queued"]
        log, end = tmp_path / "data" / "logs" / "ray-engine.log", time.monotonic() + 30
        while "waiting for the Ray cluster" not in log.read_text() and time.monotonic() < end:  # the fresh engine
            time.sleep(0.2)
        assert "waiting for the Ray cluster" in log.read_text()
        assert [server.job(j["id"])["state"] for j in queued] == ["queued", "queued"]
    finally:
        server.stop()
        doomed.kill()
