"""Request latency of the service on one kept-alive connection while a job runs.

Starts `python -m backend serve` twice on 127.0.0.1, each with a real render-orbit job running in
its worker: first with the listening socket made as before the fix (proto 0, so asyncio never sets
TCP_NODELAY on accepted connections and every reply's headers and body wait for the client's
delayed ACK), then as the service makes it now. Times GET /jobs over one HTTP/1.1 connection
(stdlib http.client) and prints p50/p99 of both and the ratio.

    .venv/backend/bin/python bench/service_latency.py [--requests 200]
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LISTENING = "Orbitex backend listening on "


def _serve_legacy(argv: list[str]) -> int:
    """The server with the socket made the old way (this process only)."""
    import socket

    sys.path.insert(0, str(REPO))
    from backend import cli
    from backend.service import server

    def legacy_bind(host: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)  # proto 0
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        return sock

    server._bind = legacy_bind
    return cli.main(["serve", *argv])


def _box_glb() -> bytes:
    import trimesh

    return trimesh.creation.box(extents=(1.0, 0.6, 0.4)).export(file_type="glb")


def _multipart(spec: dict, role: str, filename: str, payload: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="spec"\r\n\r\n{json.dumps(spec)}\r\n'.encode())
    body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{role}"; filename="{filename}"\r\n'
               "Content-Type: application/octet-stream\r\n\r\n".encode())
    body.write(payload + f"\r\n--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def measure(legacy: bool, requests: int, glb: bytes) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="orbitex_latency_") as tmp:
        data = Path(tmp) / "data"
        command = ([sys.executable, __file__, "--serve-legacy"] if legacy else [sys.executable, "-m", "backend", "serve"])
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen([*command, "--data", str(data), "--port", "0"], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            url = next(line for line in proc.stdout if line.startswith(LISTENING))[len(LISTENING):].strip()
            host, port = url.removeprefix("http://").rsplit(":", 1)
            headers = {"Authorization": f"Bearer {(data / 'token').read_text().strip()}"}
            conn = http.client.HTTPConnection(host, int(port), timeout=30)

            def call(method: str, path: str, body: bytes | None = None, extra: dict | None = None) -> dict:
                conn.request(method, path, body=body, headers={**headers, **(extra or {})})
                response = conn.getresponse()
                payload = response.read()
                assert response.status < 300, (response.status, payload[:300])
                return json.loads(payload)

            body, content_type = _multipart({"type": "render-orbit", "params": {"frames": 720, "size": 64}},
                                            "mesh", "box.glb", glb)
            job = call("POST", "/jobs", body, {"Content-Type": content_type})
            end = time.monotonic() + 120
            while call("GET", f"/jobs/{job['id']}")["progress"] <= 0.0:  # torch imported, frames rendering
                assert time.monotonic() < end, "the job did not start rendering within 120 s"
                time.sleep(0.2)
            times = []
            for _ in range(requests):
                start = time.perf_counter()
                jobs = call("GET", "/jobs")["jobs"]
                times.append(time.perf_counter() - start)
            assert jobs[0]["state"] == "running", jobs[0]
            call("POST", f"/jobs/{job['id']}/cancel", b"")
            conn.close()
            return times
        finally:
            proc.terminate()
            proc.wait(30)


def _percentile(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100, method="inclusive")[int(q) - 1] if q < 100 else max(times)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-legacy":
        return _serve_legacy(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="GET /jobs requests timed per server")
    args = parser.parse_args()
    glb = _box_glb()
    rows = {}
    for name, legacy in (("baseline (no TCP_NODELAY)", True), ("fixed", False)):
        times = measure(legacy, args.requests, glb)
        rows[name] = (statistics.median(times) * 1e3, _percentile(times, 99) * 1e3, len(times) / sum(times))
        p50, p99, rate = rows[name]
        print(f"{name:26s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  {rate:7.1f} requests/s", flush=True)
    (b50, b99, brate), (f50, f99, frate) = rows.values()
    print(f"ratio baseline/fixed: p50 {b50 / f50:.1f}x  p99 {b99 / f99:.1f}x  throughput {frate / brate:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
