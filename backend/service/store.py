"""The job store: one SQLite file shared by the HTTP process and the worker process.

Both processes open short-lived connections (WAL mode, busy timeout), so neither blocks the
other for long. Every state change is a conditional UPDATE (`WHERE state = ...`), which makes
the races between cancel, claim, finish and restart recovery atomic without locks in Python.
A job is owned by the worker that claimed it (`worker` column); a worker only writes to jobs it
still owns while they are running, so a stale worker can never overwrite a newer verdict.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("orbitex.service")


class JobState(StrEnum):
    """The one list of job states: the store writes them, the API serves them (GET /health), the
    add-on's job logic mirrors them (addon/jobs.py, kept in sync by tests/backend/test_service_schema.py)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # its process went away while it ran (backend stopped or restarted)


STATES = tuple(JobState)
FINAL_STATES = (JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    state TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL DEFAULT '{}',
    inputs TEXT NOT NULL DEFAULT '{}',
    results TEXT NOT NULL DEFAULT '[]',
    cancel_requested REAL,
    worker TEXT,
    node TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    started TEXT,
    finished TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Job:
    id: str
    type: str
    state: str
    progress: float
    stage: str
    message: str
    params: dict[str, Any]
    inputs: dict[str, dict[str, Any]]  # role -> {"file": stored name, "filename": client's name, "size": bytes}
    results: list[dict[str, Any]] = field(default_factory=list)  # [{"name", "file", "size"}]
    cancel_requested: float | None = None
    worker: str | None = None
    node: str | None = None  # the machine running (or that ran) the job, as its worker reports it
    created: str = ""
    updated: str = ""
    started: str | None = None
    finished: str | None = None

    def public(self) -> dict[str, Any]:
        """The job as the API shows it (no internal bookkeeping, no server paths)."""
        return {
            "id": self.id, "type": self.type, "state": self.state, "progress": self.progress,
            "stage": self.stage, "message": self.message, "params": self.params,
            "inputs": {role: {"filename": i.get("filename", ""), "size": i.get("size", 0)}
                       for role, i in self.inputs.items()},
            "results": [{"name": r["name"], "file": Path(r["file"]).name, "size": r["size"],
                         "url": f"/jobs/{self.id}/results/{r['name']}"} for r in self.results],
            "cancel_requested": self.cancel_requested is not None, "node": self.node or "",
            "created": self.created, "updated": self.updated, "started": self.started, "finished": self.finished,
        }


_JSON_COLUMNS = {"params": dict, "inputs": dict, "results": list}


def _row_to_job(row: sqlite3.Row) -> Job:
    """A row as a Job. A damaged JSON column (a row written by an older version, or edited by
    hand) is reported in the job's message and read as empty, so one bad row never breaks a listing."""
    values = dict(row)
    damaged = []
    for key, kind in _JSON_COLUMNS.items():
        try:
            values[key] = json.loads(values[key])
        except (TypeError, ValueError, RecursionError):
            values[key] = None
        if not isinstance(values[key], kind):
            damaged.append(key)
            values[key] = kind()
    if damaged:
        log.warning("job %s: stored %s unreadable", values.get("id"), ", ".join(damaged))
        values["message"] = (f"(the stored {', '.join(damaged)} of this job are unreadable) "
                             + str(values.get("message") or ""))
    return Job(**values)


class JobStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            if "node" not in {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}:  # a store from before nodes
                db.execute("ALTER TABLE jobs ADD COLUMN node TEXT")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=30000")
        return db

    def _execute(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with closing(self._connect()) as db:
            return db.execute(sql, args).rowcount

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[Job]:
        with closing(self._connect()) as db:
            rows = db.execute(sql, args).fetchall()
        return (_row_to_job(r) for r in rows)

    # --- HTTP side -------------------------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:16]

    def create(self, job_id: str, job_type: str, params: dict[str, Any], inputs: dict[str, dict[str, Any]]) -> Job:
        stamp = now_iso()
        self._execute(
            "INSERT INTO jobs (id, type, state, stage, params, inputs, created, updated)"
            " VALUES (?, ?, 'queued', 'queued', ?, ?, ?, ?)",
            (job_id, job_type, json.dumps(params, allow_nan=False), json.dumps(inputs, allow_nan=False), stamp, stamp))
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        return next(self._query("SELECT * FROM jobs WHERE id = ?", (job_id,)), None)

    def list(self) -> list[Job]:
        return list(self._query("SELECT * FROM jobs ORDER BY created DESC, rowid DESC"))

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued job at once, or ask its worker to stop a running one.

        Returns the state the job is in afterwards, None when there is no such job.
        """
        stamp = now_iso()
        if self._execute("UPDATE jobs SET state = 'cancelled', stage = 'cancelled', message = 'cancelled before it started',"
                         " cancel_requested = ?, updated = ?, finished = ? WHERE id = ? AND state = 'queued'",
                         (time.time(), stamp, stamp, job_id)):
            return JobState.CANCELLED
        self._execute("UPDATE jobs SET cancel_requested = ?, updated = ? WHERE id = ? AND state = 'running'"
                      " AND cancel_requested IS NULL", (time.time(), stamp, job_id))
        job = self.get(job_id)
        return None if job is None else job.state

    def mark_interrupted(self, message: str, worker: str | None = None) -> int:
        """Running jobs (of one worker, or all) become interrupted: their process is gone."""
        stamp = now_iso()
        sql = ("UPDATE jobs SET state = 'interrupted', stage = 'interrupted', message = ?, updated = ?, finished = ?"
               " WHERE state = 'running'")
        args: tuple[Any, ...] = (message, stamp, stamp)
        if worker is not None:
            sql, args = sql + " AND worker = ?", args + (worker,)
        return self._execute(sql, args)

    def end_running(self, worker: str, state: str, message: str) -> int:
        """Settle the running job of a worker that was stopped or died (supervisor side)."""
        stamp = now_iso()
        return self._execute("UPDATE jobs SET state = ?, stage = ?, message = ?, updated = ?, finished = ?"
                             " WHERE state = 'running' AND worker = ?", (state, state, message, stamp, stamp, worker))

    def requeue_unstarted(self, worker: str) -> int:
        """Running jobs of a worker that no machine ever took (no node recorded) go back to the queue:
        they never ran, so running them later runs them once (the Ray engine claims one job ahead)."""
        return self._execute("UPDATE jobs SET state = 'queued', stage = 'queued', worker = NULL, started = NULL,"
                             " progress = 0, updated = ? WHERE state = 'running' AND worker = ? AND node IS NULL"
                             " AND cancel_requested IS NULL", (now_iso(), worker))

    def stale_cancels(self, worker: str, older_than: float) -> list[Job]:
        """Running jobs of `worker` whose cancel was asked before `older_than` (epoch seconds)."""
        return list(self._query("SELECT * FROM jobs WHERE state = 'running' AND worker = ?"
                                " AND cancel_requested IS NOT NULL AND cancel_requested < ?", (worker, older_than)))

    # --- worker side -----------------------------------------------------------------------------

    def claim_next(self, worker: str) -> Job | None:
        """Atomically move the oldest queued job to running, owned by `worker`."""
        stamp = now_iso()
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created, rowid LIMIT 1").fetchone()
                if row is None:
                    db.execute("COMMIT")
                    return None
                db.execute("UPDATE jobs SET state = 'running', stage = 'starting', worker = ?, started = ?, updated = ?"
                           " WHERE id = ? AND state = 'queued'", (worker, stamp, stamp, row["id"]))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return self.get(row["id"])

    def peek_queued(self) -> Job | None:
        """The job claim_next would take now (the Ray engine looks at its type before claiming)."""
        return next(self._query("SELECT * FROM jobs WHERE state = 'queued' ORDER BY created, rowid LIMIT 1"), None)

    def set_node(self, job_id: str, worker: str, node: str) -> bool:
        """Record the machine a running job of `worker` runs on; the first one also restamps `started`
        (an engine may claim a job a moment before a machine takes it)."""
        stamp = now_iso()
        return self._execute("UPDATE jobs SET started = CASE WHEN node IS NULL THEN ? ELSE started END, node = ?,"
                             " updated = ? WHERE id = ? AND worker = ? AND state = 'running'",
                             (stamp, node[:200], stamp, job_id, worker)) > 0

    def report(self, job_id: str, worker: str, progress: float, stage: str) -> tuple[bool, bool]:
        """Store progress; returns (still owned and running, cancel requested)."""
        with closing(self._connect()) as db:
            owned = db.execute("UPDATE jobs SET progress = ?, stage = ?, updated = ?"
                               " WHERE id = ? AND worker = ? AND state = 'running'",
                               (progress, stage, now_iso(), job_id, worker)).rowcount > 0
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return owned, row is not None and row["cancel_requested"] is not None

    def finish(self, job_id: str, worker: str, state: str, message: str,
               results: list[dict[str, Any]] | None = None) -> bool:
        assert state in FINAL_STATES
        stamp = now_iso()
        progress_sql = ", progress = 1.0" if state == JobState.DONE else ""
        return self._execute(
            f"UPDATE jobs SET state = ?, stage = ?, message = ?, results = ?, updated = ?, finished = ?{progress_sql}"
            " WHERE id = ? AND worker = ? AND state = 'running'",
            (state, state, message, json.dumps(results or []), stamp, stamp, job_id, worker)) > 0
