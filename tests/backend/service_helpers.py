"""Real `python -m backend serve` processes for the service tests, with the fixture pipeline."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FIXTURE_TYPE = "fixture-sleep"
LISTENING = "Orbitex backend listening on "


class Server:
    def __init__(self, data: Path, *args: str) -> None:
        self.data = data
        env = dict(os.environ)
        env["ORBITEX_EXTRA_PIPELINES"] = f"{FIXTURE_TYPE}=service_fixture_pipeline"
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(HERE)])
        env.pop("ORBITEX_DATA", None)
        self.stderr_path = data.parent / f"{data.name}-server-{time.monotonic_ns()}.err"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--data", str(data), "--port", "0", *args],
                                     cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.lines: list[str] = []
        self._found = threading.Event()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        if not self._found.wait(60) or not any(line.startswith(LISTENING) for line in self.lines):
            self.stop()
            raise RuntimeError(f"server did not start: {self.lines} {self.stderr_path.read_text()}")
        self.url = next(line for line in self.lines if line.startswith(LISTENING))[len(LISTENING):].strip()
        self.token = (data / "token").read_text().strip()
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith(LISTENING):
                self._found.set()
        self._found.set()

    def submit(self, params: dict[str, Any] | None = None, files: dict[str, tuple[str, bytes]] | None = None,
               job_type: str = FIXTURE_TYPE) -> httpx.Response:
        files = {"data": ("data.txt", b"hello\n")} if files is None else files
        spec = json.dumps({"type": job_type, "params": params or {}})
        return self.client.post("/jobs", data={"spec": spec}, files=files)

    def submit_ok(self, params: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        response = self.submit(params, **kwargs)
        assert response.status_code == 201, response.text
        return response.json()

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: str, states: tuple[str, ...], timeout: float = 30.0,
             min_progress: float = -1.0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in states and job["progress"] >= min_progress:
                return job
            if time.monotonic() > end:
                raise AssertionError(f"job {job_id} not in {states} after {timeout} s: {job}")
            time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode

    def _close(self) -> None:
        if hasattr(self, "client"):
            self.client.close()
        self._stderr.close()

    def child_pids(self) -> list[int]:
        pids = []
        for children in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            pids += [int(p) for p in children.read_text().split()]
        return pids

    def maps_torch(self) -> bool:
        """Whether libtorch is mapped into the server (HTTP) process."""
        return "libtorch" in Path(f"/proc/{self.proc.pid}/maps").read_text()


def files_under(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}
