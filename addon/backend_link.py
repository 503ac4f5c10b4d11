"""Where the backend is: a local process the add-on starts and stops, or a remote URL + token.

Plain Python (no bpy). The local backend is `<python> -m backend serve --port P --data DIR` run with
cwd = the directory holding `backend/` (the installed extension or the repository). It prints
`Orbitex backend listening on http://HOST:PORT` and writes its bearer token to `<data>/token`.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .client import BackendClient, BackendError

LISTENING = re.compile(r"Orbitex backend listening on (https?://\S+)")
START_TIMEOUT_S = 90.0
LOG_NAME = "backend.log"

# The directory that holds backend/: the extension root (this file is <root>/addon/backend_link.py).
EXTENSION_ROOT = Path(__file__).resolve().parent.parent


def python_problem(path: str) -> str | None:
    """Why `path` cannot be the backend interpreter, or None when it looks usable."""
    if not path.strip():
        return ("Backend Python is not set: choose the python of the backend environment "
                "(made by `python build.py setup` as .venv/backend/bin/python)")
    p = Path(path).expanduser()
    if not p.exists():
        return f"Backend Python {str(p)!r} does not exist"
    if p.is_dir():
        return f"Backend Python {str(p)!r} is a folder; choose the python executable inside it (bin/python)"
    if not os.access(p, os.X_OK):
        return f"Backend Python {str(p)!r} is not executable"
    return None


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a backend URL, or None."""
    if not url.strip():
        return "Backend URL is not set (for example http://gpu-box:8000)"
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        return f"Backend URL {url!r} must start with http:// or https://"
    if not parts.hostname:
        return f"Backend URL {url!r} has no host name"
    try:
        parts.port
    except ValueError:
        return f"Backend URL {url!r} has an invalid port"
    if parts.query or parts.fragment:
        return f"Backend URL {url!r} must not have a query or fragment"
    return None


def data_dir_problem(path: str) -> str | None:
    if not path.strip():
        return "Backend data folder is not set"
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        return f"Backend data folder {str(p)!r} is a file"
    return None


@dataclass
class LocalBackend:
    """A backend process this add-on started; `stop()` ends it."""

    process: subprocess.Popen
    url: str
    token: str
    data_dir: Path
    python: str
    port: int

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    def running(self) -> bool:
        return self.process.poll() is None

    def client(self) -> BackendClient:
        return BackendClient(self.url, self.token)

    def stop(self, timeout: float = 10.0) -> None:
        _stop_process(self.process, timeout)


def _stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop the server (it shuts its worker down), then end anything left of its process group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if sys.platform != "win32":  # the server led a new session: its worker is in that group
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_local(python: str, data_dir: Path, port: int = 0, cwd: Path = EXTENSION_ROOT,
                timeout: float = START_TIMEOUT_S) -> LocalBackend:
    """Start the backend, wait for its URL line and token, check /health. Raises BackendError."""
    if problem := python_problem(python):
        raise BackendError(problem)
    if not (Path(cwd) / "backend" / "__main__.py").is_file():
        raise BackendError(f"no backend sources in {cwd} (expected {Path(cwd) / 'backend'})")
    data_dir = Path(data_dir).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / LOG_NAME
    cmd = [str(Path(python).expanduser()), "-m", "backend", "serve", "--port", str(port), "--data", str(data_dir)]
    # Output goes to a log file (no pipe to drain, and the user can read it); unbuffered so the
    # URL line arrives at once.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for var in ("PYTHONHOME", "PYTHONPATH"):  # Blender's own Python settings must not leak in
        env.pop(var, None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=str(cwd), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=sys.platform != "win32")
    deadline = time.monotonic() + timeout
    url = None
    try:
        while url is None:
            match = LISTENING.search(log_path.read_text(errors="replace"))
            if match:
                url = match.group(1).rstrip("/")
                break
            if process.poll() is not None:
                tail = _log_tail(log_path)
                hint = ("\nThis interpreter lacks the backend's packages: choose the backend environment's python "
                        "(.venv/backend/bin/python from `python build.py setup`)." if "No module named" in tail else "")
                raise BackendError(f"the local backend exited (code {process.returncode}) before it was ready. "
                                   f"Command: {' '.join(cmd)}\nLast output ({log_path}):\n{tail}{hint}")
            if time.monotonic() > deadline:
                raise BackendError(f"the local backend printed no URL within {timeout:.0f} s; "
                                   f"see {log_path}:\n{_log_tail(log_path)}")
            time.sleep(0.1)
        token_file = data_dir / "token"
        while not token_file.is_file() or not token_file.read_text().strip():
            if time.monotonic() > deadline:
                raise BackendError(f"the local backend wrote no token to {token_file}")
            time.sleep(0.05)
        backend = LocalBackend(process, url, token_file.read_text().strip(), data_dir, python, port)
        backend.client().health()
        return backend
    except BaseException:
        _stop_process(process)
        raise
