"""What the service says about itself: job types with their params schema (GET /job-types), the job
states (GET /health, mirrored by the add-on), the OpenAPI schema (token needed), and a bounded
schemathesis run against that schema that fails on any 5xx."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service_helpers import FIXTURE_TYPE, REPO, Server

SCHEMATHESIS_MAX_TIME_S = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    srv = Server(tmp_path_factory.mktemp("svc_schema") / "data")
    yield srv
    srv.stop()


def test_job_states_are_served_and_the_addon_mirrors_them(server: Server) -> None:
    sys.path.insert(0, str(REPO))
    from addon import jobs as addon_jobs
    from backend.service.store import FINAL_STATES, JobState

    health = httpx.get(server.url + "/health").json()  # no token needed
    assert health["job_states"] == [s.value for s in JobState]
    assert health["final_job_states"] == [s.value for s in FINAL_STATES]
    assert list(addon_jobs.BACKEND_STATES) == health["job_states"]
    assert list(addon_jobs.BACKEND_FINAL_STATES) == health["final_job_states"]
    assert set(addon_jobs.BACKEND_ACTIVE_STATES) == {"queued", "running"}


def test_job_types_serve_inputs_and_params_with_defaults(server: Server) -> None:
    from backend.pipelines import render_orbit

    from service_fixture_pipeline import Params as FixtureParams

    answer = server.client.get("/job-types")
    assert answer.status_code == 200, answer.text
    types = answer.json()["job_types"]
    assert FIXTURE_TYPE in types and "render-orbit" in types and "bake" in types
    fixture = types[FIXTURE_TYPE]
    assert fixture["inputs"]["data"] == {"description": "a small text file", "required": True}
    assert fixture["inputs"]["mesh"]["required"] is False
    props = fixture["params"]["properties"]
    assert {name: prop["default"] for name, prop in props.items()} == dataclasses.asdict(FixtureParams())
    assert props["steps"]["type"] == "integer" and props["delay"]["type"] == "number"
    assert props["busy"]["type"] == "boolean" and "hang" in props["fail"]["enum"]
    assert fixture["params"]["additionalProperties"] is False
    orbit = types["render-orbit"]["params"]["properties"]
    assert orbit["frames"]["default"] == render_orbit.Params().frames
    assert set(orbit["rasterizer"]["enum"]) == {"auto", "moderngl", "torch", "nvdiffrast"}
    assert httpx.get(server.url + "/job-types").status_code == 401


def test_addon_client_reads_job_types(server: Server) -> None:
    sys.path.insert(0, str(REPO))
    from addon.client import BackendClient

    types = BackendClient(server.url, server.token).job_types()
    assert types[FIXTURE_TYPE]["params"]["properties"]["steps"]["default"] == 5


def test_openapi_schema_needs_the_token(server: Server) -> None:
    assert httpx.get(server.url + "/openapi.json").status_code == 401
    schema = server.client.get("/openapi.json").json()
    form = schema["paths"]["/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"spec", "data", "mesh", "views"} <= set(form["properties"])
    assert {"/health", "/job-types", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/cancel",
            "/jobs/{job_id}/results/{name}"} <= set(schema["paths"])


def test_schemathesis_finds_no_server_error(server: Server, tmp_path: Path) -> None:
    """Coverage, fuzzing and stateful phases against the served schema, bounded in time."""
    run = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", server.url + "/openapi.json",
         "-H", f"Authorization: Bearer {server.token}", "--checks", "not_a_server_error",
         "--max-examples", "30", "--seed", "1", "--workers", "1", "--no-shrink",
         "--max-time", str(SCHEMATHESIS_MAX_TIME_S), "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=SCHEMATHESIS_MAX_TIME_S + 120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "Tested:" in run.stdout, run.stdout[-3000:]
    log = server.data / "logs" / "server.log"
    assert not log.exists() or "internal error" not in log.read_text()
    # the schema's examples (one per job type) let it submit jobs: they ran and none hit a bug
    jobs = server.client.get("/jobs").json()["jobs"]
    assert any(job["state"] == "done" for job in jobs), jobs
    assert not [job for job in jobs if job["message"].startswith("internal error")]


def test_store_sql_uses_only_the_defined_states() -> None:
    """The store's SQL spells states as literals; each must be a JobState (the one list)."""
    import re

    from backend.service import store

    source = Path(store.__file__).read_text()
    spelled = set(re.findall(r"state = '(\w+)'", source)) | set(re.findall(r"VALUES \(\?, \?, '(\w+)'", source))
    assert spelled and spelled <= {s.value for s in store.JobState}, spelled
