"""The HTTP API (FastAPI). It stores uploads and job records and serves results; it never runs a
pipeline (the worker process does) and never imports torch.

    GET  /health                       {"ok": true, "version", "job_types"}   (no token needed)
    POST /jobs                         multipart: field 'spec' = {"type", "params"} + one file per input role
    GET  /jobs                         {"jobs": [job, ...]} newest first
    GET  /jobs/{id}                    job: id, type, state, progress, stage, message, results, times
    GET  /jobs/{id}/results/{name}     a result file
    POST /jobs/{id}/cancel             cancel a queued job now, a running one within seconds
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import InputError
from . import registry, uploads
from .auth import BearerAuth
from .layout import DataLayout, is_job_id
from .store import FINAL_STATES, Job, JobStore
from .supervisor import WorkerSupervisor

log = logging.getLogger("orbitex.service")


@dataclass
class ServiceState:
    layout: DataLayout
    store: JobStore
    token: str
    max_upload_bytes: int
    supervisor: WorkerSupervisor
    on_started: Callable[[], None] = lambda: None


def create_app(state: ServiceState) -> Any:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.supervisor.start()
        state.on_started()
        try:
            yield
        finally:
            await run_in_threadpool(state.supervisor.stop)

    app = FastAPI(title="Orbitex backend", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    def find_job(job_id: str) -> Job:
        job = state.store.get(job_id) if is_job_id(job_id) else None
        if job is None:
            raise HTTPException(404, f"no job with id {job_id[:40]!r}")
        return job

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "version": __version__, "job_types": sorted(registry.job_types())}

    @app.get("/jobs")
    def list_jobs() -> dict[str, Any]:
        return {"jobs": [job.public() for job in state.store.list()]}

    @app.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return find_job(job_id).public()

    @app.get("/jobs/{job_id}/results/{name}")
    def get_result(job_id: str, name: str) -> FileResponse:
        job = find_job(job_id)
        if job.state != "done":
            raise HTTPException(409, f"job {job.id} is {job.state}; results are served once it is done")
        entry = next((r for r in job.results if name in (r["name"], os.path.basename(r["file"]))), None)
        if entry is None:
            names = ", ".join(r["name"] for r in job.results) or "none"
            raise HTTPException(404, f"job {job.id} has no result {name[:80]!r}; its results: {names}")
        root = (state.layout.job_dir(job.id) / "results").resolve()
        path = (root / entry["file"]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise HTTPException(404, f"result {entry['name']!r} of job {job.id} is missing from the data folder")
        return FileResponse(path, filename=path.name)

    @app.post("/jobs/{job_id}/cancel")
    def cancel_job(job_id: str) -> JSONResponse:
        before = find_job(job_id)
        if before.state in FINAL_STATES and before.state != "cancelled":
            raise HTTPException(409, f"job {before.id} already ended ({before.state}); nothing to cancel")
        state.store.cancel(before.id)
        job = find_job(job_id)
        return JSONResponse(job.public(), status_code=202 if job.state == "running" else 200)

    @app.post("/jobs", status_code=201)
    async def submit_job(request: Request) -> JSONResponse:
        job_id = state.store.new_id()
        staging = state.layout.upload_dir(job_id)
        staging.mkdir(mode=0o700)
        try:
            upload = await uploads.receive(request.stream(), request.headers.get("content-type"),
                                           request.headers.get("content-length"), staging, state.max_upload_bytes)
            job_type, params = _parse_spec(upload.spec)
            try:
                kind = await run_in_threadpool(registry.kind, job_type)
            except InputError:
                raise
            except Exception as exc:  # the pipeline module is broken or lacks a dependency
                log.exception("cannot load job type %s", job_type)
                raise HTTPException(503, f"job type {job_type!r} is unavailable on this backend"
                                         f" ({type(exc).__name__}: {exc})") from None
            kind.parse_params(params)
            _check_inputs(kind, upload)
            job_dir = state.layout.job_dir(job_id)
            job_dir.mkdir(mode=0o700)
            os.replace(staging, job_dir / "inputs")
            inputs = {role: {"file": s.file, "filename": s.filename, "size": s.size}
                      for role, s in upload.inputs.items()}
            job = state.store.create(job_id, job_type, params or {}, inputs)
        except uploads.UploadError as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)
        except InputError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        except ClientDisconnect:
            return JSONResponse({"detail": "the client disconnected during the upload"}, status_code=400)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        state.supervisor.wake()
        return JSONResponse(job.public(), status_code=201)

    return BearerAuth(app, state.token)


def _parse_spec(raw: bytes | None) -> tuple[str, dict[str, Any] | None]:
    example = 'e.g. {"type": "render-orbit", "params": {"frames": 8}}'
    if raw is None:
        raise InputError(f"missing form field 'spec' (JSON {example})")
    try:
        spec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"form field 'spec' is not valid JSON ({exc}); {example}") from None
    if not isinstance(spec, dict):
        raise InputError(f"form field 'spec' must be a JSON object, {example}")
    unknown = sorted(set(spec) - {"type", "params"})
    if unknown:
        raise InputError(f"unknown key(s) in spec: {', '.join(unknown)}; a spec has 'type' and 'params'")
    if not isinstance(spec.get("type"), str) or not spec["type"]:
        raise InputError(f"spec needs a 'type' (the job type), {example}")
    params = spec.get("params")
    if params is not None and not isinstance(params, dict):
        raise InputError("spec 'params' must be a JSON object")
    return spec["type"], params


def _check_inputs(kind: registry.JobKind, upload: uploads.Upload) -> None:
    known = {**kind.inputs, **kind.optional_inputs}
    expected = ", ".join([f"{r} (required)" for r in kind.inputs] + [f"{r} (optional)" for r in kind.optional_inputs])
    for role in upload.inputs:
        if role not in known:
            raise InputError(f"job type {kind.type!r} takes no input {role!r}; its inputs: {expected or 'none'}")
    missing = [role for role in kind.inputs if role not in upload.inputs]
    if missing:
        raise InputError(f"missing input file(s) for {kind.type!r}: " + ", ".join(
            f"{role} ({kind.inputs[role]})" for role in missing) + "; upload each under the form field named by its role")
    for role, stored in upload.inputs.items():
        if stored.size == 0:
            raise InputError(f"input {role!r} ({stored.filename or 'no file name'}) is empty")
