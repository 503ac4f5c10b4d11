"""Jobs on the Blender side: a record per job and a step function (plain Python, no bpy).

A job moves  new -> (submit) -> queued/running -> (poll ...) -> downloading -> applying -> done,
or ends failed | cancelled | interrupted with a message. Each `step()` call does one HTTP
request (or the apply), so a Blender timer can call it without freezing the UI, and tests or
background scripts can call it in a loop (`run_blocking`). Applying the result is the caller's
callback: only it touches the scene. Cancelling does no request of its own: `request_cancel()`
marks the job (safe on Blender's UI thread) and the job's next step tells the backend.
"""
from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import BackendClient, BackendError, BackendUnreachable

# The backend's job states and which of them are final, as it serves them (GET /health "job_states",
# "final_job_states"; backend.service.store.JobState). The add-on cannot import the backend, so
# this is a copy, kept equal to the served lists by tests/backend/test_service_schema.py.
BACKEND_STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
BACKEND_FINAL_STATES = ("done", "failed", "cancelled", "interrupted")
BACKEND_ACTIVE_STATES = tuple(s for s in BACKEND_STATES if s not in BACKEND_FINAL_STATES)
BACKEND_END_STATES = tuple(s for s in BACKEND_FINAL_STATES if s != "done")  # ended without a result
# The add-on's own job states: the backend's, plus its steps before submitting and after the backend is done.
ACTIVE_STATES = ("new", *BACKEND_ACTIVE_STATES, "downloading", "applying")
END_STATES = BACKEND_FINAL_STATES
# Polls in a row that may go unanswered before a job is given up (a remote link may blink).
MAX_POLL_FAILURES = 5
NOT_SUBMITTED = "cancelled before it was submitted"


@dataclass
class Job:
    type: str                       # job type, as the backend names it ("render-orbit")
    params: dict[str, Any]          # the spec's params
    inputs: dict[str, Path]         # role -> file to upload
    target: str                     # name of the object the result belongs to
    work_dir: Path                  # where inputs were written and results are downloaded
    fetch: tuple[str, ...] = ()     # result names to download; empty: all of them
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # local id (panel, cancel)
    backend_id: str | None = None
    state: str = "new"
    progress: float = 0.0
    stage: str = ""
    message: str = ""
    results: list[str] = field(default_factory=list)        # names the backend offers
    result_files: dict[str, str] = field(default_factory=dict)  # name -> file name (for its suffix)
    downloaded: dict[str, Path] = field(default_factory=dict)
    poll_failures: int = 0
    cancel_requested: bool = False  # asked on the main thread; the next step() tells the backend
    cancel_sent: bool = False
    cancel_error: str = ""          # why the backend could not be told (the job goes on)
    meta: dict[str, Any] = field(default_factory=dict)  # the caller's own data (target object's id, UV plan)
    node: str = ""                  # the backend machine running the job (Ray engine: one of many)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def fail(self, message: str, state: str = "failed") -> None:
        self.state = state
        self.message = message


Apply = Callable[[Job], None]

# how a batch counts its jobs, per backend machine
PROGRESS_GROUPS = {"new": "queued", "queued": "queued", "running": "running", "downloading": "running",
                   "applying": "running", "done": "done", "failed": "failed", "cancelled": "failed",
                   "interrupted": "failed"}


def count_by_node(jobs: Iterable[Job]) -> dict[str, dict[str, int]]:
    """{node: {"done": n, "failed": n, "running": n, "queued": n}}; jobs no machine took yet under ""."""
    counts: dict[str, dict[str, int]] = {}
    for job in jobs:
        group = counts.setdefault(job.node, dict.fromkeys(("done", "failed", "running", "queued"), 0))
        group[PROGRESS_GROUPS.get(job.state, "failed")] += 1
    return counts


def _take_record(job: Job, record: dict[str, Any]) -> None:
    job.progress = float(record.get("progress") or 0.0)
    job.stage = str(record.get("stage") or "")
    job.message = str(record.get("message") or "")
    job.node = str(record.get("node") or job.node)
    # Results come as names or as {"name", "file", ...} records.
    job.results, job.result_files = [], {}
    for result in record.get("results") or []:
        name = result["name"] if isinstance(result, dict) else str(result)
        job.results.append(name)
        file = Path(str(result.get("file") or name)).name if isinstance(result, dict) else name
        job.result_files[name] = file or name


def step(job: Job, client: BackendClient, apply: Apply) -> Job:
    """Advance `job` by one transition. Never raises for backend or apply errors: they end the job."""
    if not job.active:
        return job
    try:
        if job.state == "new":
            if job.cancel_requested:
                job.fail(NOT_SUBMITTED, "cancelled")
                return job
            record = client.submit(job.type, job.params, job.inputs)
            job.backend_id = str(record["id"])
            _take_record(job, record)
            job.state = record.get("state", "queued")
            if job.state == "done":
                job.state = "downloading"
            elif job.state in BACKEND_END_STATES:
                job.message = job.message or f"the backend reports the job {job.state}"
        elif job.state in BACKEND_ACTIVE_STATES:
            if job.cancel_requested and not job.cancel_sent:
                _send_cancel(job, client)
                return job
            try:
                record = client.job(job.backend_id)
            except BackendUnreachable as exc:
                job.poll_failures += 1
                if job.poll_failures >= MAX_POLL_FAILURES:
                    job.fail(f"lost contact with the backend: {exc}")
                return job
            job.poll_failures = 0
            _take_record(job, record)
            state = record.get("state")
            if state == "done":
                job.state = "downloading"
                job.stage = "downloading results"
            elif state in BACKEND_END_STATES:
                job.fail(job.message or f"the backend reports the job {state}", state)
            elif state in BACKEND_ACTIVE_STATES:
                job.state = state
            else:
                job.fail(f"the backend reports an unknown job state {state!r}")
        elif job.state == "downloading":
            if job.cancel_requested:
                job.fail("cancelled; the result was not applied", "cancelled")
                return job
            wanted = job.fetch or tuple(job.results)
            missing = [name for name in wanted if name not in job.results]
            if missing:
                job.fail(f"the backend finished but did not return {', '.join(missing)} "
                         f"(it returned: {', '.join(job.results) or 'nothing'})")
                return job
            for name in wanted:
                dest = job.work_dir / "results" / job.result_files.get(name, name)
                job.downloaded[name] = client.download(job.backend_id, name, dest)
            job.state = "applying"
            job.stage = "applying result"
        elif job.state == "applying":
            if job.cancel_requested:
                job.fail("cancelled; the result was not applied", "cancelled")
                return job
            try:
                apply(job)
            except Exception as exc:  # the scene side reports why; the job ends, the timer lives on
                job.fail(f"could not apply the result to {job.target!r}: {exc}")
                return job
            job.state = "done"
            job.progress = 1.0
            job.stage = "applied"
    except BackendError as exc:
        job.fail(str(exc))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        job.fail(f"{type(exc).__name__}: {exc}")
    return job


def _send_cancel(job: Job, client: BackendClient) -> None:
    """Tell the backend to stop `job`; it ends as `cancelled` on a later poll."""
    try:
        client.cancel(job.backend_id)
        job.cancel_sent = True
    except BackendError as exc:  # the job goes on as it was; cancel can be asked again
        job.cancel_requested = False
        job.cancel_error = f"cancel failed: {exc}"


def request_cancel(job: Job) -> None:
    """Ask `job` to stop, without any network (safe on Blender's UI thread): the job's next step()
    tells the backend, or ends it if it was never submitted."""
    if job.active and not job.cancel_requested:
        job.cancel_requested, job.cancel_sent, job.cancel_error = True, False, ""


def run_blocking(job: Job, client: BackendClient, apply: Apply, timeout: float = 3600.0,
                 interval: float = 0.25, sleep: Callable[[float], None] = time.sleep) -> Job:
    """Step `job` until it ends (scripts, background mode, tests). On timeout: cancel, then fail."""
    deadline = time.monotonic() + timeout
    while job.active:
        before = job.state
        step(job, client, apply)
        if job.state in BACKEND_ACTIVE_STATES and job.state == before:
            if time.monotonic() > deadline:
                request_cancel(job)
                step(job, client, apply)  # sends the cancel
                job.fail(f"gave up after {timeout:.0f} s; the backend job {job.backend_id} "
                         + (f"could not be cancelled ({job.cancel_error})" if job.cancel_error else "was asked to cancel"))
                break
            sleep(interval)
    return job


@dataclass
class Tracked:
    job: Job
    client: BackendClient | None  # None until a starting backend answers (see session.track)
    apply: Apply


class JobBoard:
    """The jobs of this Blender session, in submission order (what the Jobs panel lists)."""

    def __init__(self) -> None:
        self._entries: list[Tracked] = []

    def add(self, job: Job, client: BackendClient | None, apply: Apply) -> Job:
        self._entries.append(Tracked(job, client, apply))
        return job

    def jobs(self) -> list[Job]:
        return [e.job for e in self._entries]

    def get(self, job_id: str) -> Tracked | None:
        return next((e for e in self._entries if e.job.id == job_id), None)

    def any_active(self) -> bool:
        return any(e.job.active for e in self._entries)

    def active(self) -> list[Tracked]:
        return [e for e in self._entries if e.job.active]

    def clear_finished(self) -> list[Job]:
        """Forget ended jobs and delete their work folders (applied results live in the .blend)."""
        gone = [e for e in self._entries if not e.job.active]
        self._entries = [e for e in self._entries if e.job.active]
        _remove_dirs(e.job.work_dir for e in gone)
        return [e.job for e in gone]

    def clear(self) -> None:
        _remove_dirs(e.job.work_dir for e in self._entries)
        self._entries = []


def _remove_dirs(dirs: Iterable[Path]) -> None:
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
