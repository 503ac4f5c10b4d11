"""The worker process: `python -m backend.service.worker --data DIR --worker-id ID`.

Started (and restarted) by the HTTP process; runs queued jobs one at a time, in this process, so
torch and the models live here and never in the HTTP process. Its stdin is a pipe from the
server: a line wakes it up early (a job was submitted), end-of-file means the server is gone and
the worker exits at once, even in the middle of a job (the next server marks that job interrupted).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Cancelled, OrbitexError
from ..pipelines import parse_params
from ..progress import Progress
from ..threads import Rebalancing
from ..threads import configure as configure_threads
from . import registry
from .layout import DataLayout
from .store import Job, JobStore

REPORT_EVERY_S = 0.2  # progress write + cancel check in SQLite at most this often (and on each new stage)
STAGE_CHARS = 200  # a stage name is kept to this many characters in the job record
IDLE_POLL_S = 1.0


class ThrottledProgress:
    """A pipeline's Progress on its way to the job's record (the worker's store or the Ray engine's
    board): fractions clamped to [0, 1] (a NaN keeps the last), passed to `send()` at most every
    REPORT_EVERY_S and at once on each new stage, the stage cut to STAGE_CHARS."""

    def __init__(self) -> None:
        self.fraction, self.stage = 0.0, ""
        self._last = -math.inf

    def __call__(self, fraction: float, stage: str) -> None:
        if math.isfinite(fraction):
            self.fraction = min(max(float(fraction), 0.0), 1.0)
        now = time.monotonic()
        if stage == self.stage and now - self._last < REPORT_EVERY_S:
            return
        self.stage, self._last = stage, now
        self.send(self.fraction, stage[:STAGE_CHARS])

    def send(self, fraction: float, stage: str) -> None:
        """Record one report; raise Cancelled to stop the pipeline."""
        raise NotImplementedError


class JobProgress(ThrottledProgress):
    """The Progress a pipeline gets: stores progress, raises Cancelled when the job was cancelled."""

    def __init__(self, store: JobStore, job_id: str, worker: str) -> None:
        super().__init__()
        self.store, self.job_id, self.worker = store, job_id, worker

    def send(self, fraction: float, stage: str) -> None:
        owned, cancel = self.store.report(self.job_id, self.worker, fraction, stage)
        if cancel:
            raise Cancelled("cancelled by request")
        if not owned:  # the server settled this job meanwhile (e.g. restart recovery): stop working on it
            raise Cancelled("the job is no longer assigned to this worker")


def collect_results(results: dict[str, Any], results_dir: Path, progress: Progress) -> list[dict[str, Any]]:
    """Turn run()'s {name: path} into stored result entries; folders are zipped as NAME.zip."""
    root = results_dir.resolve()
    entries = []
    for name, value in results.items():
        path = Path(value).resolve()
        if not path.is_relative_to(root):
            raise RuntimeError(f"result {name!r} ({path}) lies outside the job's results folder")
        if path.is_dir():
            progress(1.0, f"packing {name}")
            zipped = root / f"{name}.zip"
            with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
                for member in sorted(path.rglob("*")):
                    if member.is_file():
                        archive.write(member, member.relative_to(path).as_posix())
            path = zipped
        if not path.is_file():
            raise RuntimeError(f"result {name!r} ({path.name}) was not written")
        entries.append({"name": str(name), "file": path.relative_to(root).as_posix(), "size": path.stat().st_size})
    return entries


@dataclass
class Outcome:
    """How a job run ended: its end state, the message, result entries and a traceback (bugs only)."""

    state: str
    message: str = ""
    entries: list[dict[str, Any]] = field(default_factory=list)
    traceback: str = ""


def execute(job_type: str, job_params: dict[str, Any], inputs: dict[str, Path], results_dir: Path,
            progress: Progress, threads: int = 0) -> Outcome:
    """Run one job's pipeline into `results_dir` (which must exist and be empty) and say how it ended.
    The local worker and the Ray engine's tasks both run jobs through this."""
    try:
        progress(0.0, "starting")
        configure_threads(threads)
        module = registry.load(job_type)
        params = parse_params(module.Params, job_params)
        results = module.run(inputs, params, results_dir, Rebalancing(progress, threads))
        return Outcome("done", "", collect_results(results, results_dir, progress))
    except Cancelled as exc:
        return Outcome("cancelled", str(exc))
    except OrbitexError as exc:
        return Outcome("failed", str(exc))
    except Exception as exc:  # a bug or an unexpected library error: short message, traceback to the log
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        return Outcome("failed", f"internal error: {type(exc).__name__}: {text} (traceback in the job folder's job.log)",
                       traceback=traceback.format_exc())


def fresh_results_dir(job_dir: Path) -> Path:
    results_dir = job_dir / "results"
    if results_dir.exists():
        shutil.rmtree(results_dir)
    results_dir.mkdir(parents=True)
    return results_dir


def run_job(store: JobStore, layout: DataLayout, job: Job, worker: str, threads: int = 0) -> str:
    """Run one claimed job to its end state; returns that state. `threads`: CPU threads for the job
    (0: the cores free when it starts)."""
    job_dir = layout.job_dir(job.id)
    results_dir = fresh_results_dir(job_dir)
    store.set_node(job.id, worker, socket.gethostname())
    inputs = {role: job_dir / "inputs" / info["file"] for role, info in job.inputs.items()}
    outcome = execute(job.type, job.params, inputs, results_dir, JobProgress(store, job.id, worker), threads)
    if outcome.traceback:
        (job_dir / "job.log").write_text(outcome.traceback)
    store.finish(job.id, worker, outcome.state, outcome.message, outcome.entries)
    return outcome.state


def _watch_stdin(wake: threading.Event) -> None:
    """Wake on each line; exit the whole process when the server closes the pipe (or dies)."""
    for _ in sys.stdin.buffer:
        wake.set()
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.service.worker")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per job (default 0: the cores that are free)")
    args = parser.parse_args(argv)
    notes = logging.getLogger("orbitex")  # threads picked, what pipelines decided on their own: to worker.log
    if not notes.handlers:
        notes.addHandler(logging.StreamHandler(sys.stdout))
        notes.setLevel(logging.INFO)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when this process ends (stdin EOF)
    layout = DataLayout(args.data)
    store = JobStore(layout.database)
    wake = threading.Event()
    threading.Thread(target=_watch_stdin, args=(wake,), daemon=True).start()
    while True:
        job = store.claim_next(args.worker_id)
        if job is None:
            wake.wait(IDLE_POLL_S)
            wake.clear()
            continue
        state = run_job(store, layout, job, args.worker_id, args.threads)
        print(f"job {job.id} ({job.type}): {state}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
