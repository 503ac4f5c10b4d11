"""HTTP client for the Orbitex backend service (standard library only: urllib + multipart).

API: GET /health (no auth); GET /job-types (inputs and params schema of each job type); POST /jobs (multipart: form field `spec` = JSON {"type", "params"},
plus one file per input role); GET /jobs; GET /jobs/{id}; GET /jobs/{id}/results/{name};
POST /jobs/{id}/cancel. Errors come back as JSON {"detail": ...} with a 4xx status.
"""
from __future__ import annotations

import http.client
import json
import mimetypes
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# File types the backend reads, which `mimetypes` does not always know.
_CONTENT_TYPES = {
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".obj": "model/obj",
    ".ply": "application/ply",
}


class BackendError(Exception):
    """The backend answered with an error (status is the HTTP code) or something unreadable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BackendUnreachable(BackendError):
    """No answer at all: connection refused, DNS failure, timeout."""


def content_type_for(path: Path) -> str:
    suffix = path.suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _quote_header_value(value: str) -> str:
    # RFC 7578: names and file names are quoted strings; CR/LF/quote must not break the header.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode_multipart(fields: Mapping[str, str], files: Mapping[str, Path]) -> tuple[bytes, str]:
    """multipart/form-data body and its Content-Type; `files` maps form field -> file on disk."""
    boundary = f"orbitex-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote_header_value(name)}"\r\n'
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n".encode()
            + value.encode("utf-8") + b"\r\n"
        )
    for name, path in files.items():
        path = Path(path)
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote_header_value(name)}"; '
            f'filename="{_quote_header_value(path.name)}"\r\n'
            f"Content-Type: {content_type_for(path)}\r\n\r\n".encode()
            + path.read_bytes() + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _detail_text(detail: Any) -> str:
    """FastAPI sends a string, or for validation errors a list of {loc, msg}; make either readable."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        items = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                items.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
            else:
                items.append(str(item))
        return "; ".join(items)
    return json.dumps(detail)


class BackendClient:
    """One backend (local or remote): base URL plus bearer token."""

    def __init__(self, base_url: str, token: str = "", timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"BackendClient({self.base_url!r})"

    # -- transport -------------------------------------------------------------------------
    def _open(self, method: str, path: str, body: bytes | None = None,
              content_type: str | None = None, auth: bool = True, timeout: float | None = None):
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc, method, path) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackendUnreachable(f"cannot reach the Orbitex backend at {self.base_url}: {reason}") from None

    def _http_error(self, exc: urllib.error.HTTPError, method: str, path: str) -> BackendError:
        raw = exc.read() or b""
        try:
            detail = _detail_text(json.loads(raw.decode("utf-8"))["detail"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            detail = raw.decode("utf-8", "replace").strip()[:300] or exc.reason
        if exc.code == 401:
            return BackendError(f"the backend at {self.base_url} refused the token (HTTP 401): {detail}. "
                                "Check the token in the Orbitex preferences.", 401)
        return BackendError(f"{detail} (HTTP {exc.code} from {method} {path})", exc.code)

    def _read(self, response, size: int) -> bytes:
        try:
            return response.read(size)
        except (OSError, http.client.HTTPException) as exc:  # reset or timeout mid-answer
            raise BackendUnreachable(f"the Orbitex backend at {self.base_url} stopped answering: {exc}") from None

    def _json(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
              auth: bool = True, timeout: float | None = None) -> Any:
        with self._open(method, path, body, content_type, auth, timeout) as response:
            raw = self._read(response, -1)
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise BackendError(f"the backend sent an unreadable answer to {method} {path}: {raw[:200]!r}") from None

    @staticmethod
    def _job_path(job_id: str) -> str:
        return "/jobs/" + urllib.parse.quote(job_id, safe="")

    # -- API -------------------------------------------------------------------------------
    def health(self, timeout: float = 5.0) -> dict[str, Any]:
        return self._json("GET", "/health", auth=False, timeout=timeout)

    def job_types(self) -> dict[str, dict[str, Any]]:
        """Job type -> {"description", "inputs": {role: {"description", "required"}}, "params": JSON Schema
        of its params ("properties": {name: {"type", "default", "enum", ...}})}: the backend's own defaults."""
        return self._json("GET", "/job-types")["job_types"]

    def submit(self, job_type: str, params: Mapping[str, Any], inputs: Mapping[str, Path]) -> dict[str, Any]:
        """Upload the input files (form field = role) with the spec; returns the job record."""
        spec = json.dumps({"type": job_type, "params": dict(params)})
        body, content_type = encode_multipart({"spec": spec}, inputs)
        return self._json("POST", "/jobs", body, content_type)

    def list_jobs(self) -> list[dict[str, Any]]:
        answer = self._json("GET", "/jobs")
        return answer["jobs"] if isinstance(answer, dict) and "jobs" in answer else answer

    def job(self, job_id: str, timeout: float | None = 10.0) -> dict[str, Any]:
        return self._json("GET", self._job_path(job_id), timeout=timeout)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", self._job_path(job_id) + "/cancel", b"")

    def download(self, job_id: str, name: str, dest: Path) -> Path:
        """Stream result `name` of a job to `dest` (written beside it first, then renamed)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        path = f"{self._job_path(job_id)}/results/{urllib.parse.quote(name, safe='')}"
        try:
            with self._open("GET", path) as response, open(partial, "wb") as fh:
                while chunk := self._read(response, 1 << 20):
                    fh.write(chunk)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, dest)
        return dest
