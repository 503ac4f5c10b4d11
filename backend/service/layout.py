"""Where the service keeps things inside its data folder.

    <data>/token                bearer token (mode 0600)
    <data>/jobs.sqlite3         job records
    <data>/server.lock          held (flock) by the one server using this folder
    <data>/logs/worker.log      worker process output (ray-engine.log with --engine ray)
    <data>/uploads/<id>/        an upload being received (moved to jobs/<id>/inputs when accepted)
    <data>/jobs/<id>/inputs/    input files, named ROLE + suffix
    <data>/jobs/<id>/results/   what the pipeline wrote; job.log beside it holds a traceback if any
"""
from __future__ import annotations

import os
import re
from pathlib import Path

_JOB_ID = re.compile(r"[0-9a-f]{16}")
DATA_ENV = "ORBITEX_DATA"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV) or Path.home() / ".local" / "share" / "orbitex").expanduser()


def is_job_id(text: str) -> bool:
    return _JOB_ID.fullmatch(text) is not None


class DataLayout:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.token = self.root / "token"
        self.database = self.root / "jobs.sqlite3"
        self.lock = self.root / "server.lock"
        self.logs = self.root / "logs"
        self.uploads = self.root / "uploads"
        self.jobs = self.root / "jobs"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for folder in (self.logs, self.uploads, self.jobs):
            folder.mkdir(exist_ok=True, mode=0o700)

    def job_dir(self, job_id: str) -> Path:
        if not is_job_id(job_id):  # ids are ours (hex); anything else never becomes a path
            raise ValueError(f"not a job id: {job_id!r}")
        return self.jobs / job_id

    def upload_dir(self, job_id: str) -> Path:
        if not is_job_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.uploads / job_id
