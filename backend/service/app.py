"""The HTTP API (FastAPI). It stores uploads and job records and serves results; it never runs a
pipeline (the worker process does) and never imports torch.

    GET  /health                       {"ok": true, "version", "job_types", "job_states", "final_job_states"}
                                       (no token needed)
    GET  /job-types                    {"job_types": {type: {"description", "inputs", "params"}}}: each type's
                                       input roles and its params as JSON Schema (types, defaults, choices)
    GET  /openapi.json                 the API's OpenAPI schema
    POST /jobs                         multipart: field 'spec' = {"type", "params"} + one file per input role
    GET  /jobs                         {"jobs": [job, ...]} newest first
    GET  /jobs/{id}                    job: id, type, state, progress, stage, message, results, times
    GET  /jobs/{id}/results/{name}     a result file
    POST /jobs/{id}/cancel             cancel a queued job now, a running one within seconds
"""
from __future__ import annotations

import dataclasses
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
from . import registry, spec, uploads
from .auth import BearerAuth
from .layout import DataLayout, is_job_id
from .public import json_safe, public_job
from .store import FINAL_STATES, STATES, Job, JobState, JobStore
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
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")

    def find_job(job_id: str) -> Job:
        job = state.store.get(job_id) if is_job_id(job_id) else None
        if job is None:
            raise HTTPException(404, f"no job with id {job_id[:40]!r}")
        return job

    def shown(job: Job, status_code: int = 200) -> JSONResponse:
        return JSONResponse(public_job(job, state.layout), status_code=status_code)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "version": __version__, "job_types": sorted(registry.job_types()),
                "job_states": list(STATES), "final_job_states": list(FINAL_STATES)}

    @app.get("/job-types")
    def job_types() -> JSONResponse:
        described: dict[str, Any] = {}
        for name in sorted(registry.job_types()):
            try:
                described[name] = _describe(name)
            except Exception as exc:  # a broken pipeline module: say so, describe the others
                log.exception("cannot describe job type %s", name)
                described[name] = {"unavailable": f"{type(exc).__name__}: {exc}"}
        return JSONResponse(json_safe({"job_types": described})[0])

    @app.get("/jobs")
    def list_jobs() -> JSONResponse:
        return JSONResponse({"jobs": [public_job(job, state.layout) for job in state.store.list()]})

    @app.get("/jobs/{job_id}", operation_id="get_job")
    def get_job(job_id: str) -> JSONResponse:
        return shown(find_job(job_id))

    @app.get("/jobs/{job_id}/results/{name}", operation_id="get_result")
    def get_result(job_id: str, name: str) -> FileResponse:
        job = find_job(job_id)
        if job.state != JobState.DONE:
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

    @app.post("/jobs/{job_id}/cancel", operation_id="cancel_job")
    def cancel_job(job_id: str) -> JSONResponse:
        before = find_job(job_id)
        if before.state in FINAL_STATES and before.state != JobState.CANCELLED:
            raise HTTPException(409, f"job {before.id} already ended ({before.state}); nothing to cancel")
        state.store.cancel(before.id)
        job = find_job(job_id)
        return shown(job, 202 if job.state == JobState.RUNNING else 200)

    @app.post("/jobs", status_code=201, openapi_extra=_SUBMIT_BODY)
    async def submit_job(request: Request) -> JSONResponse:
        job_id = state.store.new_id()
        staging = state.layout.upload_dir(job_id)
        staging.mkdir(mode=0o700)
        try:
            upload = await uploads.receive(request.stream(), request.headers.get("content-type"),
                                           request.headers.get("content-length"), staging, state.max_upload_bytes)
            job_type, params = spec.parse_spec(upload.spec)
            try:
                kind = await run_in_threadpool(registry.kind, job_type)
            except InputError:
                raise
            except Exception as exc:  # the pipeline module is broken or lacks a dependency
                log.exception("cannot load job type %s", job_type)
                raise HTTPException(503, f"job type {job_type!r} is unavailable on this backend"
                                         f" ({type(exc).__name__}: {exc})") from None
            params = spec.normalised(params, kind.parse_params(params))
            _check_inputs(kind, upload)
            job_dir = state.layout.job_dir(job_id)
            job_dir.mkdir(mode=0o700)
            os.replace(staging, job_dir / "inputs")
            inputs = {role: {"file": s.file, "filename": s.filename, "size": s.size}
                      for role, s in upload.inputs.items()}
            job = state.store.create(job_id, job_type, params, inputs)
        except uploads.UploadError as exc:
            return JSONResponse({"detail": json_safe(exc.detail)[0]}, status_code=exc.status)
        except InputError as exc:
            return JSONResponse({"detail": json_safe(str(exc))[0]}, status_code=400)
        except ClientDisconnect:
            return JSONResponse({"detail": "the client disconnected during the upload"}, status_code=400)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        state.supervisor.wake()
        return shown(job, 201)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return BearerAuth(app, state.token)


# POST /jobs reads its multipart body as a stream (uploads.receive), so FastAPI cannot infer it;
# the input roles of the job types are added when the schema is first asked for (_openapi).
_SUBMIT_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["spec"], "properties": {
            "spec": {"type": "string", "contentMediaType": "application/json",
                     "description": 'JSON {"type": JOB_TYPE, "params": {...}} (see GET /job-types)'}}}}}},
    # the id of a new job feeds the job's other operations (schemathesis' stateful phase follows these)
    "responses": {"201": {"description": "the job, queued", "links": {
        name: {"operationId": operation, "parameters": {"job_id": "$response.body#/id"}}
        for name, operation in (("GetJob", "get_job"), ("CancelJob", "cancel_job"), ("GetResult", "get_result"))}}},
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        media = schema["paths"]["/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
        form, media["examples"] = media["schema"], {}
        for job_type in sorted(registry.job_types()):
            try:
                kind = registry.kind(job_type)
            except Exception:  # a broken pipeline module: GET /job-types says so
                continue
            media["examples"][job_type] = {"summary": f"a {job_type} job with default params", "value": {
                "spec": json.dumps({"type": job_type, "params": {}}), **{role: "..." for role in kind.inputs}}}
            for role, text in {**kind.inputs, **kind.optional_inputs}.items():
                form["properties"].setdefault(role, {"type": "string", "format": "binary", "description": ""})
                form["properties"][role]["description"] += f"{job_type}: {text}. "
        app.openapi_schema = schema
    return app.openapi_schema


_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {}


def _describe(job_type: str) -> dict[str, Any]:
    """A job type's inputs and its params as JSON Schema (made by pydantic from the Params dataclass)."""
    if job_type not in _PARAM_SCHEMAS:
        import pydantic

        module = registry.load(job_type)
        kind = registry.kind(job_type)
        params = _closed_inline(pydantic.TypeAdapter(kind.params_cls).json_schema(mode="serialization"))
        _instance_defaults(params, dataclasses.asdict(kind.params_cls()))
        inputs = {role: {"description": text, "required": True} for role, text in kind.inputs.items()}
        inputs |= {role: {"description": text, "required": False} for role, text in kind.optional_inputs.items()}
        _PARAM_SCHEMAS[job_type] = json_safe({
            "description": (module.__doc__ or job_type).strip().splitlines()[0], "inputs": inputs, "params": params})[0]
    return _PARAM_SCHEMAS[job_type]


def _instance_defaults(schema: dict[str, Any], defaults: dict[str, Any], factory: bool = False) -> None:
    """Defaults pydantic leaves out, from a default instance: default_factory fields have none, and
    inside one (refine's `bake`) the factory's values stand, not the nested class's own defaults."""
    for name, prop in schema["properties"].items():
        made = factory or "default" not in prop
        if prop.get("type") == "object" and "properties" in prop and isinstance(defaults[name], dict):
            _instance_defaults(prop, defaults[name], made)
        if made:
            prop["default"] = defaults[name]


def _closed_inline(schema: dict[str, Any]) -> dict[str, Any]:
    """The params schema with nested dataclasses (texture's `bake`) inlined in place of $refs, so a
    client reads `properties.bake.properties.method.default` directly; every object closed
    (additionalProperties false), as parse_params refuses unknown names at every level."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            node = {**defs[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
        node = {key: walk(value) for key, value in node.items()}
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
        return node

    return walk(schema)


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
