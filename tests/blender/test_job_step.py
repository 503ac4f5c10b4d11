"""The plain-Python job step function against a real backend process: transitions, the apply
callback, errors that end a job, lost contact, cancel and timeout."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from orbitex_testing import backend_python, import_addon, new_mesh_object

pytestmark = pytest.mark.skipif(backend_python() is None,
                                reason="no backend environment: set ORBITEX_BACKEND_PYTHON or run `python build.py setup`")

import_addon()
from orbitex.addon import jobs  # noqa: E402
from orbitex.addon.backend_link import start_local  # noqa: E402
from orbitex.addon.client import BackendClient  # noqa: E402
from orbitex.addon.jobs import Job, request_cancel, run_blocking, step  # noqa: E402


@pytest.fixture(scope="module")
def mesh_glb(tmp_path_factory) -> Path:
    import bpy

    from orbitex.addon import scene_io

    obj = new_mesh_object("StepMesh", with_subdivision=False)
    try:
        return scene_io.export_mesh_glb(obj, tmp_path_factory.mktemp("mesh") / "mesh.glb")
    finally:
        bpy.data.objects.remove(obj)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    local = start_local(backend_python(), tmp_path_factory.mktemp("data"))
    yield local
    local.stop()


def _job(mesh: Path, work: Path, **params) -> Job:
    return Job("render-orbit", {"frames": 2, "size": 32, **params}, {"mesh": mesh}, "StepMesh", work,
               fetch=("contact_sheet",))


def _step_until(job: Job, client: BackendClient, apply, predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate(job):
        assert time.monotonic() < deadline, (job.state, job.stage, job.message)
        step(job, client, apply)
        time.sleep(0.05)


def test_one_transition_per_step_and_the_result_reaches_apply(backend, mesh_glb, tmp_path):
    client, applied, states = backend.client(), [], []
    job = _job(mesh_glb, tmp_path / "w")
    step(job, client, applied.append)
    assert job.state in ("queued", "running") and job.backend_id
    _step_until(job, client, applied.append, lambda j: states.append(j.state) or not j.active)
    assert job.state == "done" and job.progress == 1.0 and applied == [job]
    assert states[-3:] == ["downloading", "applying", "done"]
    sheet = job.downloaded["contact_sheet"]
    assert sheet.parent == tmp_path / "w" / "results" and sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "contact_sheet" in job.results


def test_an_apply_error_ends_the_job_with_its_reason(backend, mesh_glb, tmp_path):
    def apply(job):
        raise RuntimeError("object was deleted")

    job = run_blocking(_job(mesh_glb, tmp_path / "w"), backend.client(), apply)
    assert job.state == "failed"
    assert job.message == "could not apply the result to 'StepMesh': object was deleted"


def test_a_missing_result_name_fails_and_names_what_came_back(backend, mesh_glb, tmp_path):
    job = _job(mesh_glb, tmp_path / "w")
    job.fetch = ("no_such_result",)
    run_blocking(job, backend.client(), lambda j: None)
    assert job.state == "failed"
    assert "did not return no_such_result (it returned: " in job.message and "contact_sheet" in job.message


def test_backend_gone_mid_job_ends_it_after_some_unanswered_polls(mesh_glb, tmp_path):
    own = start_local(backend_python(), tmp_path / "data")  # this test stops it
    client = own.client()
    job = _job(mesh_glb, tmp_path / "w", frames=121, size=1024)
    step(job, client, lambda j: None)
    own.stop()
    for _ in range(jobs.MAX_POLL_FAILURES - 1):
        step(job, client, lambda j: None)
        assert job.active and job.poll_failures > 0  # a blink is tolerated
    step(job, client, lambda j: None)
    assert job.state == "failed" and job.message.startswith("lost contact with the backend: cannot reach")


def test_cancel_before_submit_needs_no_backend(mesh_glb, tmp_path):
    job = _job(mesh_glb, tmp_path / "w")
    request_cancel(job)
    step(job, BackendClient("http://127.0.0.1:9"), lambda j: None)
    assert job.state == "cancelled" and job.backend_id is None


def test_blocking_run_gives_up_after_its_timeout_and_cancels(backend, mesh_glb, tmp_path):
    client = backend.client()
    job = run_blocking(_job(mesh_glb, tmp_path / "w", frames=121, size=1024), client, lambda j: None, timeout=1.0)
    assert job.state == "failed" and job.message.startswith("gave up after 1 s")
    deadline = time.monotonic() + 30
    while client.job(job.backend_id)["state"] not in ("cancelled", "failed", "done"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert client.job(job.backend_id)["state"] == "cancelled"
