"""Transport-level tests of the add-on's stdlib HTTP client against a tiny http.server:
multipart encoding, bearer auth, error mapping. (Job flows are tested against the real backend.)"""
from __future__ import annotations

import email.parser
import email.policy
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orbitex_testing import import_addon

import_addon()
from orbitex.addon.client import BackendClient, BackendError, BackendUnreachable, encode_multipart  # noqa: E402


class _Handler(BaseHTTPRequestHandler):
    routes: dict = {}
    seen: list = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append((self.command, self.path, dict(self.headers), body))
        status, content_type, payload = type(self).routes.get((self.command, self.path), (404, "application/json",
                                                                                         b'{"detail": "no route"}'))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


@pytest.fixture()
def fake():
    _Handler.routes, _Handler.seen = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Handler
    server.shutdown()
    server.server_close()


def _parse_multipart(headers: dict, body: bytes):
    raw = f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body
    return email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)


@pytest.mark.writes_invalid_gltf  # arbitrary bytes under a .glb name: the transport must not care
def test_submit_sends_spec_and_files_as_multipart_with_bearer_token(fake, tmp_path):
    url, handler = fake
    handler.routes[("POST", "/jobs")] = (201, "application/json", json.dumps({"id": "ab12", "state": "queued"}).encode())
    mesh = tmp_path / 'we"ird name.glb'
    payload = bytes(range(256)) * 40 + b"\r\n--not-a-boundary\r\n"  # binary, CRLFs, dashes
    mesh.write_bytes(payload)
    record = BackendClient(url, "s3cret").submit("render-orbit", {"frames": 8, "size": 128}, {"mesh": mesh})
    assert record == {"id": "ab12", "state": "queued"}
    method, path, headers, body = handler.seen[-1]
    assert (method, path) == ("POST", "/jobs")
    assert headers["Authorization"] == "Bearer s3cret"
    message = _parse_multipart(headers, body)
    parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
    assert set(parts) == {"spec", "mesh"}
    assert json.loads(parts["spec"].get_content()) == {"type": "render-orbit", "params": {"frames": 8, "size": 128}}
    assert parts["mesh"].get_content_type() == "model/gltf-binary"
    assert parts["mesh"].get_payload(decode=True) == payload
    assert parts["mesh"].get_filename() == "we%22ird name.glb"


def test_multipart_boundary_is_not_in_the_payload(tmp_path):
    f = tmp_path / "a.png"
    f.write_bytes(b"\x89PNG" + b"x" * 100)
    body, content_type = encode_multipart({"spec": "{}"}, {"image": f})
    boundary = content_type.split("boundary=")[1]
    assert body.count(boundary.encode()) == 3  # two parts + closing delimiter
    assert body.endswith(f"--{boundary}--\r\n".encode())


def test_health_sends_no_token_and_other_calls_do(fake):
    url, handler = fake
    handler.routes[("GET", "/health")] = (200, "application/json", b'{"status": "ok"}')
    handler.routes[("GET", "/jobs/j%2F1")] = (200, "application/json", b'{"id": "j/1", "state": "running"}')
    client = BackendClient(url, "tok")
    assert client.health() == {"status": "ok"}
    assert "Authorization" not in handler.seen[-1][2]
    assert client.job("j/1")["state"] == "running"  # ids are quoted into one path segment
    assert handler.seen[-1][2]["Authorization"] == "Bearer tok"


def test_error_detail_becomes_the_message(fake):
    url, handler = fake
    handler.routes[("GET", "/jobs/nope")] = (404, "application/json", b'{"detail": "no job nope"}')
    handler.routes[("GET", "/jobs")] = (401, "application/json", b'{"detail": "missing or wrong token"}')
    handler.routes[("POST", "/jobs")] = (422, "application/json", json.dumps(
        {"detail": [{"loc": ["body", "spec"], "msg": "field required"}]}).encode())
    handler.routes[("POST", "/jobs/x/cancel")] = (500, "text/plain", b"Internal Server Error")
    client = BackendClient(url, "t")
    with pytest.raises(BackendError, match=r"no job nope \(HTTP 404") as err:
        client.job("nope")
    assert err.value.status == 404
    with pytest.raises(BackendError, match="refused the token .*missing or wrong token") as err:
        client.list_jobs()
    assert err.value.status == 401
    with pytest.raises(BackendError, match="spec: field required"):
        client.submit("render-orbit", {}, {})
    with pytest.raises(BackendError, match="Internal Server Error") as err:
        client.cancel("x")
    assert err.value.status == 500 and not isinstance(err.value, BackendUnreachable)


def test_unreadable_success_answer_is_an_error(fake):
    url, handler = fake
    handler.routes[("GET", "/jobs")] = (200, "text/html", b"<html>proxy login</html>")
    with pytest.raises(BackendError, match="unreadable answer"):
        BackendClient(url, "t").list_jobs()


def test_download_streams_the_result_to_a_file(fake, tmp_path):
    url, handler = fake
    data = bytes(range(256)) * 5000
    handler.routes[("GET", "/jobs/j1/results/contact_sheet")] = (200, "image/png", data)
    dest = BackendClient(url, "t").download("j1", "contact_sheet", tmp_path / "out" / "sheet.png")
    assert dest.read_bytes() == data
    assert not list((tmp_path / "out").glob("*.part"))


def test_nothing_listening_is_unreachable():
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendUnreachable, match=f"cannot reach the Orbitex backend at http://127.0.0.1:{port}"):
        BackendClient(f"http://127.0.0.1:{port}", "t").health()
