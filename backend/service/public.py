"""What clients are shown of a job: its public record with no server paths in it, always valid JSON.

Messages come from pipelines and libraries, which name files by their full paths; the API shows a
file by its name alone (an input's role name, e.g. "mesh.glb"), never where the server keeps it.
A record that cannot be shown as stored (a damaged row, text UTF-8 cannot encode, NaN) is
repaired for display and logged, so one bad row never breaks a listing.
"""
from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Any

from .layout import DataLayout, is_job_id
from .store import Job

log = logging.getLogger("orbitex.service")

# An absolute path (POSIX, or a Windows drive path) not inside a word, a URL or another path;
# it ends at whitespace, a quote, a bracket or punctuation that follows paths in messages.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/\\.~-])(?:/|[A-Za-z]:[\\/])[^\s'\"`()\[\]{}<>,;:]+")


def redact_paths(text: str, layout: DataLayout, job_id: str | None = None) -> str:
    """`text` with every absolute path replaced by its last part (the file's name)."""
    roots: list[tuple[Path, str]] = []
    if job_id is not None and is_job_id(job_id):
        job_dir = layout.job_dir(job_id)
        roots += [(job_dir / "inputs", "the job's inputs"), (job_dir / "results", "the job's results"),
                  (job_dir, "the job's folder")]
    roots.append((layout.root, "the data folder"))
    for root, name in roots:  # known folders first: they may hold spaces, where the pattern stops
        for form in sorted({str(root), str(root.resolve())}, key=len, reverse=True):
            text = text.replace(form + os.sep, "").replace(form, name)
    home = str(Path.home())
    if len(home) > 1:
        text = text.replace(home + "/", "~/").replace(home, "~")
    return _ABSOLUTE_PATH.sub(lambda m: _last_part(m.group(0)), text)


def _last_part(path: str) -> str:
    parts = [p for p in re.split(r"[\\/]", path) if p]
    return parts[-1] if parts else path


def json_safe(value: Any) -> tuple[Any, bool]:
    """(value fit for strict UTF-8 JSON, whether anything had to be repaired)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value, False
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8"), True
    if isinstance(value, float) and not math.isfinite(value):
        return None, True
    if isinstance(value, dict):
        out, repaired = {}, False
        for key, item in value.items():
            safe_key, bad_key = json_safe(str(key))
            out[safe_key], bad = json_safe(item)
            repaired = repaired or bad or bad_key
        return out, repaired
    if isinstance(value, (list, tuple)):
        items = [json_safe(item) for item in value]
        return [item for item, _ in items], any(bad for _, bad in items)
    if value is None or isinstance(value, (bool, int, float)):
        return value, False
    return str(value), True


def public_job(job: Job, layout: DataLayout) -> dict[str, Any]:
    """The API's record of a job."""
    try:
        record = job.public()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # results/inputs of a damaged row
        log.warning("job %s: stored record unreadable (%s: %s)", job.id, type(exc).__name__, exc)
        record = {"id": job.id, "type": str(job.type), "state": str(job.state), "progress": 0.0,
                  "stage": str(job.stage), "message": f"(the stored record of this job is damaged) {job.message}",
                  "params": {}, "inputs": {}, "results": [], "cancel_requested": False,
                  "created": job.created, "updated": job.updated, "started": job.started, "finished": job.finished}
    record["message"] = redact_paths(str(record["message"]), layout, job.id)
    record, repaired = json_safe(record)
    if repaired:
        log.warning("job %s: stored record held values JSON cannot carry; shown repaired", job.id)
    return record
