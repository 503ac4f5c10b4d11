"""Nothing blocks Blender's UI thread: the timer runs submit/poll/download on a worker thread and
applies results on the main thread; a UI call never waits for a local backend to start; a register()
that fails part way leaves nothing behind."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import bpy
import pytest

from orbitex_testing import enabled_addon, import_addon


@pytest.fixture()
def addon():
    with enabled_addon() as module:
        yield module


class _FakeClient:
    """Answers like the backend, recording the thread each request ran on."""

    base_url = "http://fake"

    def __init__(self) -> None:
        self.threads: dict[str, threading.Thread] = {}

    def submit(self, job_type, params, inputs):  # type: ignore[no-untyped-def]
        self.threads["submit"] = threading.current_thread()
        return {"id": "b1", "state": "queued"}

    def job(self, job_id):  # type: ignore[no-untyped-def]
        self.threads["poll"] = threading.current_thread()
        return {"id": job_id, "state": "done", "progress": 1.0, "results": [{"name": "r", "file": "r.txt"}]}

    def download(self, job_id, name, dest):  # type: ignore[no-untyped-def]
        self.threads["download"] = threading.current_thread()
        time.sleep(0.3)  # a slow download: the timer keeps returning meanwhile
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("result")
        return dest


def _tick_until_done(session, job, timeout: float = 20.0) -> list[float]:
    """Call the timer body until the job ends; returns how long each call took."""
    durations = []
    deadline = time.monotonic() + timeout
    while job.active:
        assert time.monotonic() < deadline, (job.state, job.message)
        start = time.monotonic()
        session.tick()
        durations.append(time.monotonic() - start)
        time.sleep(0.02)
    return durations


def test_timer_steps_on_a_worker_and_applies_on_the_main_thread(addon, tmp_path: Path):
    from orbitex.addon import session
    from orbitex.addon.jobs import Job

    client, applied = _FakeClient(), []
    job = Job("texture", {}, {}, "Thing", tmp_path)
    session.track(job, client, lambda j: applied.append(threading.current_thread()))
    durations = _tick_until_done(session, job)
    main = threading.main_thread()
    assert job.state == "done", job.message
    assert {name: t is main for name, t in client.threads.items()} == {"submit": False, "poll": False, "download": False}
    assert applied == [main] and (job.work_dir / "results" / "r.txt").read_text() == "result"
    assert max(durations) < 0.2  # the 0.3 s download never ran inside a timer call
    session.board.clear()


def test_a_job_waiting_on_a_starting_backend_is_submitted_when_it_answers(addon, tmp_path: Path, monkeypatch):
    from orbitex.addon import session
    from orbitex.addon.jobs import Job

    client = _FakeClient()

    def slow_start(config):  # type: ignore[no-untyped-def]
        time.sleep(0.5)  # a local backend takes seconds to start
        return client

    monkeypatch.setattr(session, "connect_with", slow_start)
    job = Job("texture", {}, {}, "Waiting", tmp_path)
    session.track(job, None, lambda j: None)
    durations = _tick_until_done(session, job)
    assert job.state == "done" and client.threads["submit"] is not threading.main_thread()
    assert max(durations) < 0.2
    cancelled = Job("texture", {}, {}, "Cancelled", tmp_path)
    session.track(cancelled, None, lambda j: None)
    session.cancel(cancelled.id)
    _tick_until_done(session, cancelled)
    assert cancelled.state == "cancelled" and "before it was submitted" in cancelled.message
    session.board.clear()


class _SlowCancelClient(_FakeClient):
    """A running backend job whose cancel request takes a while (a remote link) or is refused."""

    def __init__(self, refuse: bool = False) -> None:
        super().__init__()
        self.refuse, self.cancelled = refuse, False

    def cancel(self, job_id):  # type: ignore[no-untyped-def]
        from orbitex.addon.client import BackendError

        self.threads["cancel"] = threading.current_thread()
        time.sleep(0.3)
        if self.refuse:
            raise BackendError("HTTP 500 from the backend")
        self.cancelled = True
        return {"id": job_id, "state": "running"}

    def job(self, job_id):  # type: ignore[no-untyped-def]
        self.threads["poll"] = threading.current_thread()
        return {"id": job_id, "state": "cancelled" if self.cancelled else "running", "progress": 0.5}


def _running_job(session, client, tmp_path: Path):  # type: ignore[no-untyped-def]
    from orbitex.addon.jobs import Job

    job = Job("texture", {}, {}, "Cancel Me", tmp_path, state="running", backend_id="b1")
    session.track(job, client, lambda j: None)
    return job


def test_cancel_from_the_jobs_panel_does_no_network_on_the_main_thread(addon, tmp_path: Path):
    from orbitex.addon import session

    client = _SlowCancelClient()
    job = _running_job(session, client, tmp_path)
    begin = time.monotonic()
    assert bpy.ops.orbitex.cancel_job(job_id=job.id) == {"FINISHED"}
    assert time.monotonic() - begin < 0.2 and "cancel" not in client.threads  # nothing sent yet
    assert job.active and job.cancel_requested
    durations = _tick_until_done(session, job)
    assert job.state == "cancelled", (job.state, job.message)
    assert client.threads["cancel"] is not threading.main_thread() and max(durations) < 0.2
    session.board.clear()


def test_a_refused_cancel_leaves_the_job_running_and_says_why(addon, tmp_path: Path):
    from orbitex.addon import session

    client = _SlowCancelClient(refuse=True)
    job = _running_job(session, client, tmp_path)
    assert bpy.ops.orbitex.cancel_job(job_id=job.id) == {"FINISHED"}
    deadline = time.monotonic() + 10
    while not job.cancel_error:  # the refusal comes back from the worker
        assert time.monotonic() < deadline
        session.tick()
        time.sleep(0.02)
    assert job.state == "running" and not job.cancel_requested
    assert job.cancel_error == "cancel failed: HTTP 500 from the backend"
    client.refuse = False  # asked again, it goes through
    assert bpy.ops.orbitex.cancel_job(job_id=job.id) == {"FINISHED"} and job.cancel_error == ""
    _tick_until_done(session, job)
    assert job.state == "cancelled", (job.state, job.message)
    session.board.clear()


def test_ui_call_does_not_wait_for_the_local_backend(addon, tmp_path: Path, monkeypatch):
    from orbitex.addon import session
    from orbitex.addon.client import BackendError

    started = threading.Event()

    def slow_start(config):  # type: ignore[no-untyped-def]
        started.set()
        time.sleep(1.0)
        raise BackendError("the local backend printed no URL")

    monkeypatch.setattr(session, "connect_with", slow_start)
    begin = time.monotonic()
    with session.ui_call():
        assert session.connect() is None
    assert time.monotonic() - begin < 0.3 and started.wait(2) and session.starting()
    while session.starting():
        time.sleep(0.05)
    assert not session.starting()


def test_failed_register_rolls_everything_back(monkeypatch):
    orbitex = import_addon()
    from orbitex.addon import registration, session

    def broken() -> None:
        raise RuntimeError("session start failed")

    monkeypatch.setattr(session, "startup", broken)
    with pytest.raises(RuntimeError, match="session start failed"):
        registration.register()
    assert not any(getattr(cls, "is_registered", False) for cls in registration.CLASSES)
    assert not hasattr(bpy.types.Scene, "orbitex_texturing")
    assert orbitex is not None


def test_job_operators_have_no_redo_and_check_their_context(addon):
    """A Redo-panel tweak must not submit another job (no REGISTER), and operators that need a
    selection, a collection or a job say so in poll() (greyed out instead of failing)."""
    from orbitex.operators import CLASSES

    submitting = {"orbitex.render_orbit_preview", "orbitex.texture_selected", "orbitex.bake_from_cameras",
                  "orbitex.batch_collection", "orbitex.reconstruct_gaussians", "orbitex.complete_back",
                  "orbitex.apply_result", "orbitex.refine_subject"}
    by_name = {cls.bl_idname: cls for cls in CLASSES if hasattr(cls, "bl_idname")}
    assert submitting <= set(by_name)
    for name in submitting:
        assert "REGISTER" not in getattr(by_name[name], "bl_options", set()), name
    needs_context = submitting - {"orbitex.reconstruct_gaussians"} | {"orbitex.cancel_job", "orbitex.clear_jobs",
                                                                      "orbitex.cancel_batch", "orbitex.backend_stop"}
    for name in needs_context:
        assert "poll" in vars(by_name[name]) or any("poll" in vars(b) for b in by_name[name].__mro__[1:-1]), name
