"""Bad submissions get a clear 4xx JSON detail or a failed job with a readable message; never a
500, never a file outside the data folder, never a half-stored job."""
from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from service_helpers import FIXTURE_TYPE, Server, files_under

LIMIT_MB = 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    srv = Server(tmp_path_factory.mktemp("svc_bad") / "data", "--max-upload-mb", str(LIMIT_MB))
    yield srv
    srv.stop()


def _detail(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "Traceback" not in detail
    return detail


def _no_new_job(server: Server, before: list[dict]) -> None:
    assert server.client.get("/jobs").json()["jobs"] == before
    assert list((server.data / "uploads").iterdir()) == []


@pytest.mark.parametrize("spec,expected", [
    (None, "missing form field 'spec'"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"params": {}}', "needs a 'type'"),
    ('{"type": "paint-the-moon"}', "unknown job type 'paint-the-moon'; known: "),
    ('{"type": "fixture-sleep", "priority": 3}', "unknown key(s) in spec: priority"),
    ('{"type": "fixture-sleep", "params": [1]}', "'params' must be a JSON object"),
    ('{"type": "fixture-sleep", "params": {"stepz": 3}}', "unknown parameter(s) stepz"),
    ('{"type": "fixture-sleep", "params": {"steps": "many"}}', "parameter 'steps': 'many' is not a valid int"),
    ('{"type": "fixture-sleep", "params": {"fail": "sometimes"}}', "parameter 'fail'"),
])
def test_bad_spec(server: Server, spec: str | None, expected: str) -> None:
    before = server.client.get("/jobs").json()["jobs"]
    data = {} if spec is None else {"spec": spec}
    response = server.client.post("/jobs", data=data, files={"data": ("data.txt", b"hello\n")})
    assert expected in _detail(response, 400)
    _no_new_job(server, before)


@pytest.mark.parametrize("files,expected", [
    ({}, "missing input file(s) for 'fixture-sleep': data (a small text file)"),
    ({"extra": ("x.txt", b"x")}, "missing input file(s) for 'fixture-sleep': data"),
    ({"data": ("d.txt", b"x"), "colour": ("c.txt", b"x")}, "takes no input 'colour'; its inputs: data (required)"),
    ({"data": ("d.txt", b"")}, "input 'data' (d.txt) is empty"),
    ({"../x": ("d.txt", b"x")}, "invalid input field name '../x'"),
])
def test_bad_inputs(server: Server, files: dict, expected: str) -> None:
    before = server.client.get("/jobs").json()["jobs"]
    spec = json.dumps({"type": FIXTURE_TYPE})
    if files:
        response = server.client.post("/jobs", data={"spec": spec}, files=files)
    else:  # a multipart body with the spec alone
        body = b'--b\r\nContent-Disposition: form-data; name="spec"\r\n\r\n' + spec.encode() + b"\r\n--b--\r\n"
        response = server.client.post("/jobs", headers={"Content-Type": "multipart/form-data; boundary=b"},
                                      content=body)
    assert expected in _detail(response, 400)
    _no_new_job(server, before)


def test_wrong_content_type(server: Server) -> None:
    response = server.client.post("/jobs", json={"type": FIXTURE_TYPE})
    assert "unsupported content type 'application/json'; expected multipart/form-data" in _detail(response, 415)
    assert "expected a multipart/form-data request" in _detail(server.client.post("/jobs"), 415)


def test_malformed_multipart(server: Server) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    body = b'--xyz\r\nContent-Disposition: form-data; name="data"; filename="d.txt"\r\n\r\nhello'
    assert "incomplete multipart body" in _detail(server.client.post("/jobs", headers=headers, content=body), 400)
    assert "without a boundary" in _detail(
        server.client.post("/jobs", headers={"Content-Type": "multipart/form-data"}, content=b"x"), 400)
    assert list((server.data / "uploads").iterdir()) == []


def _multipart(boundary: bytes, spec: dict, role: str, payload: Iterator[bytes]) -> Iterator[bytes]:
    yield (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="spec"\r\n\r\n'
           + json.dumps(spec).encode() + b"\r\n")
    yield b"--" + boundary + f'\r\nContent-Disposition: form-data; name="{role}"; filename="big.bin"\r\n\r\n'.encode()
    yield from payload
    yield b"\r\n--" + boundary + b"--\r\n"


def test_upload_over_the_limit(server: Server) -> None:
    before = server.client.get("/jobs").json()["jobs"]
    jobs_before = files_under(server.data / "jobs")
    big = b"x" * (LIMIT_MB * (1 << 20) + 1000)
    response = server.submit(files={"data": ("big.txt", big)})  # with Content-Length
    assert "larger than the limit of 1 MiB (--max-upload-mb)" in _detail(response, 413)
    # chunked, no Content-Length: the limit holds on the bytes streamed so far
    chunks = _multipart(b"bnd", {"type": FIXTURE_TYPE}, "data", (b"y" * 65536 for _ in range(40)))
    response = server.client.post("/jobs", headers={"Content-Type": "multipart/form-data; boundary=bnd"},
                                  content=chunks)
    assert "Content-Length" not in response.request.headers
    assert "larger than the limit" in _detail(response, 413)
    _no_new_job(server, before)
    assert files_under(server.data / "jobs") == jobs_before
    # a just-fitting upload is accepted
    ok = server.submit({"steps": 1, "delay": 0.0}, files={"data": ("fits.txt", b"z" * (LIMIT_MB * (1 << 20) - 4096))})
    assert ok.status_code == 201, ok.text
    assert server.wait(ok.json()["id"], ("done", "failed"))["state"] == "done"


def test_huge_declared_upload_is_refused_before_reading_it(server: Server) -> None:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + server.token.encode()
                     + b"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000000\r\n\r\n")
        reply_bytes = b""
        while b"}" not in reply_bytes and (chunk := conn.recv(65536)):
            reply_bytes += chunk
    reply = reply_bytes.decode()
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "larger than the limit" in reply


def test_unknown_or_path_like_job_ids(server: Server) -> None:
    for job_id in ("0123456789abcdef", "nope", "..", "..%2F..%2Ftoken", "%2E%2E"):
        for method, path in (("GET", f"/jobs/{job_id}"), ("POST", f"/jobs/{job_id}/cancel"),
                             ("GET", f"/jobs/{job_id}/results/token")):
            response = server.client.request(method, path)
            assert response.status_code == 404, (path, response.text)
            assert "token" not in response.text or "no job" in response.text


def test_unknown_result_name(server: Server) -> None:
    job = server.submit_ok({"steps": 1, "delay": 0.0})
    server.wait(job["id"], ("done",))
    for name in ("nothing", "job.log", "data.txt"):
        detail = _detail(server.client.get(f"/jobs/{job['id']}/results/{name}"), 404)
        assert "no result" in detail and "its results: echo, parts" in detail
    for name in ("%2E%2E", "..%2Finputs%2Fdata.txt", "..%2F..%2F..%2Ftoken"):  # no route matches a decoded '/'
        detail = _detail(server.client.get(f"/jobs/{job['id']}/results/{name}"), 404)
        assert detail == "Not Found" or "no result" in detail


MESHES = {
    "garbage.glb": b"glTF this is not a binary glTF at all",
    "nothing.obj": b"# an OBJ with a vertex and no faces\nv 0 0 0\n",
    "flat.obj": b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n",
    "cube.stl": b"solid x\nendsolid x\n",
}


@pytest.mark.writes_invalid_gltf  # a garbage GLB on purpose
@pytest.mark.parametrize("name,expected", [
    ("garbage.glb", "mesh.glb: cannot read the mesh"),
    ("nothing.obj", "mesh.obj: the file holds no triangles"),
    ("flat.obj", "mesh.obj: the mesh has zero surface area"),
    ("cube.stl", "mesh.stl: unsupported mesh format '.stl'"),
])
def test_unusable_mesh_fails_the_job_with_a_readable_message(server: Server, name: str, expected: str) -> None:
    job = server.submit_ok({"steps": 1}, files={"data": ("d.txt", b"x"), "mesh": (name, MESHES[name])})
    failed = server.wait(job["id"], ("done", "failed"))
    assert failed["state"] == "failed" and failed["message"].startswith(expected), failed["message"]
    assert not (server.data / "jobs" / job["id"] / "job.log").exists()  # a user error, not a bug


def test_no_500_was_ever_logged(server: Server) -> None:
    log = server.data / "logs" / "server.log"
    assert not log.exists() or "internal error" not in log.read_text()
    assert "Traceback" not in Path(server.stderr_path).read_text()
