"""The Ray engine's process: `python -m backend.service.ray_engine --data DIR --worker-id ID [...]`.

Started and kept alive by the HTTP process like the local worker (supervisor.py), but instead of
running jobs itself it is a Ray driver: it claims queued jobs from the SQLite store and runs each
as one Ray task (`run_task`), with the resources of its job type (one GPU for the GPU job types),
so a cluster with N GPUs runs N jobs at once. Ray schedules; this process only keeps the store,
which stays the one record of every job, up to date. It is the only writer to the store:

- progress: the task reports to a `ProgressBoard` actor; this process drains the board a few
  times a second into the store and hands back which jobs were cancelled, which the task's own
  progress call turns into `Cancelled` (the job's cancel check);
- cancel: that flag at once, `ray.cancel(force=True)` after the cancel grace (at once for a task
  still waiting in Ray's queue);
- inputs and results: through the data folder when every node sees it (`--data-mode shared`), or
  as bytes through Ray's object store (`object-store`);
- a job stays `queued` in the store until there is room for it in the cluster; only one claimed
  job at a time may wait inside Ray's queue (stage "waiting for a Ray worker ..."), so a demand
  the cluster cannot meet yet shows up there (and to Ray's autoscaler).

Faults. A task whose worker process or node dies is retried once on another worker
(`--on-worker-lost retry`, the default: the job's message says it ran twice) or marked interrupted
(`interrupt`); a second loss marks it interrupted. Ray tasks share the fate of their driver, this
process: when it dies (the cluster went away, the server stopped) its tasks end with it, and the
supervisor marks its running jobs interrupted (a job claimed ahead that no worker took yet goes
back to the queue) and starts a fresh driver, which waits for the cluster to answer before it
claims anything, so queued jobs stay queued meanwhile. Ray ends a driver whose cluster is gone
after `RAY_gcs_rpc_server_reconnect_timeout_s` (60 s by default). A restarted
server therefore finds no task to re-attach to and marks the jobs that were running interrupted;
nothing runs twice unless the retry policy says so, and then the job says so.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..errors import Cancelled
from .layout import DataLayout
from .store import Job, JobStore
from .supervisor import parse_resources
from .worker import Outcome, ThrottledProgress, execute, fresh_results_dir

GPU_JOB_TYPES = frozenset({"texture", "bake", "reconstruct", "refine", "complete"})
LOOP_S = 0.2  # store <-> board sync and task completion check
IDLE_S = 1.0
CONNECT_RETRY_S = 5.0
LOST_ERRORS = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
               ray.exceptions.LocalRayletDiedError, ray.exceptions.ObjectLostError)


# --- inside the cluster ----------------------------------------------------------------------------

@ray.remote(num_cpus=0, max_restarts=-1)
class ProgressBoard:
    """Latest progress per running task (task -> engine) and the cancelled job ids (engine -> task)."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[int, float, str, str]] = {}
        self.cancelled: set[str] = set()

    def report(self, job_id: str, attempt: int, fraction: float, stage: str, node: str) -> bool:
        self.latest[job_id] = (attempt, fraction, stage, node)
        return job_id in self.cancelled

    def sync(self, cancelled: list[str]) -> dict[str, tuple[int, float, str, str]]:
        self.cancelled = set(cancelled)
        latest, self.latest = self.latest, {}
        return latest


class BoardProgress(ThrottledProgress):
    """The Progress a pipeline gets inside a Ray task: reports to the board, raises Cancelled.

    Reports never wait for the board's answer: a task blocked in ray.get lends its CPU back to Ray,
    which would start one more task than the cluster has room for. The answer to one report (was
    the job cancelled?) is read at the next one that finds it ready.
    """

    def __init__(self, board: Any, job_id: str, attempt: int) -> None:
        super().__init__()
        self.board, self.job_id, self.attempt = board, job_id, attempt
        self.node = socket.gethostname()
        self._answers: list[Any] = []

    def send(self, fraction: float, stage: str) -> None:
        cancelled = False
        try:
            ready, self._answers = ray.wait(self._answers, num_returns=len(self._answers), timeout=0)
            cancelled = any(ray.get(ready))
        except ray.exceptions.RayError:
            pass  # the board is restarting (its node died): progress waits, ray.cancel still reaches us
        self._answers.append(self.board.report.remote(self.job_id, self.attempt, fraction, stage, self.node))
        if cancelled:
            raise Cancelled("cancelled by request")


@ray.remote(max_retries=0)
def run_task(job_id: str, attempt: int, job_type: str, params: dict[str, Any], inputs: dict[str, Any],
             job_dir: str | None, board: Any) -> dict[str, Any]:
    """One job on a Ray worker. `inputs`: role -> path (shared data folder, `job_dir` given) or
    role -> (file name, bytes) (object store; the results come back as bytes too)."""
    progress = BoardProgress(board, job_id, attempt)
    threads = max(1, int(float(os.environ.get("OMP_NUM_THREADS") or 1)))  # Ray sets it to the task's num_cpus
    if job_dir is not None:
        outcome = execute(job_type, params, {role: Path(p) for role, p in inputs.items()},
                          fresh_results_dir(Path(job_dir)), progress, threads)
        return {"outcome": outcome, "files": {}, "node": progress.node}
    with tempfile.TemporaryDirectory(prefix=f"orbitex-{job_id}-") as scratch:
        folder = Path(scratch)
        (folder / "inputs").mkdir()
        local = {}
        for role, (name, content) in inputs.items():
            local[role] = folder / "inputs" / name
            local[role].write_bytes(content)
        outcome = execute(job_type, params, local, fresh_results_dir(folder), progress, threads)
        files = {e["file"]: (folder / "results" / e["file"]).read_bytes() for e in outcome.entries}
    return {"outcome": outcome, "files": files, "node": progress.node}


# --- the driver ------------------------------------------------------------------------------------

def default_resources(job_type: str, cluster_has_gpus: bool) -> dict[str, Any]:
    """One GPU (and one CPU) for the GPU job types where the cluster has GPUs, else one CPU."""
    if job_type in GPU_JOB_TYPES and cluster_has_gpus:
        return {"num_cpus": 1, "num_gpus": 1}
    return {"num_cpus": 1}


def demand(options: dict[str, Any]) -> dict[str, float]:
    """Ray resource names and amounts of task options."""
    need = {"CPU": float(options.get("num_cpus", 1)), "GPU": float(options.get("num_gpus", 0)),
            "memory": float(options.get("memory", 0))}
    need.update({k: float(v) for k, v in (options.get("resources") or {}).items()})
    return {k: v for k, v in need.items() if v > 0}


def fits(need: dict[str, float], available: dict[str, float]) -> bool:
    return all(available.get(k, 0.0) >= v for k, v in need.items())


@dataclass
class Flight:
    """A claimed job and its Ray task."""

    job: Job
    ref: Any
    attempt: int
    options: dict[str, Any]
    started: bool = False  # its task reported from a worker
    node: str = ""
    cancel_at: float | None = None
    forced: bool = False
    first_loss: str = ""


class Dispatcher:
    def __init__(self, store: JobStore, layout: DataLayout, worker: str, resources: dict[str, dict[str, Any]],
                 on_worker_lost: str, shared: bool, cancel_grace_s: float) -> None:
        self.store, self.layout, self.worker = store, layout, worker
        self.on_worker_lost, self.shared, self.cancel_grace_s = on_worker_lost, shared, cancel_grace_s
        self.flights: dict[str, Flight] = {}
        self.resources = resources
        totals = ray.cluster_resources()
        self._has_gpus = totals.get("GPU", 0) > 0
        node = ray.get_runtime_context().get_node_id()
        self.board = ProgressBoard.options(  # beside this driver: it lives as long as the driver's node
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True)).remote()
        print(f"Ray cluster: {_describe(totals)}; job resources: "
              + ", ".join(f"{t} {demand(self.options_for(t))}" for t in _job_types()), flush=True)

    def options_for(self, job_type: str) -> dict[str, Any]:
        return {**default_resources(job_type, self._has_gpus), **self.resources.get(job_type, {})}

    def free(self) -> dict[str, float]:
        """What the cluster has free for one more task of ours. Ray's own view lags behind tasks
        just submitted, so it is capped by the totals minus what our tasks in flight hold."""
        available, totals = ray.available_resources(), ray.cluster_resources()
        held: dict[str, float] = {}
        for flight in self.flights.values():
            for key, amount in demand(flight.options).items():
                held[key] = held.get(key, 0.0) + amount
        return {k: min(v, totals.get(k, 0.0) - held.get(k, 0.0)) for k, v in available.items()}

    # one round: settle ended tasks, then move progress and cancels, then claim what fits. Settling
    # first keeps the store's order true: a task ends before the one that took its worker reports.
    def step(self) -> None:
        self.settle(LOOP_S if self.flights else 0.0)
        self.sync()
        self.dispatch()

    def dispatch(self) -> None:
        while True:
            waiting = any(not f.started for f in self.flights.values())
            head = self.store.peek_queued()
            if head is None:
                return
            if waiting and not fits(demand(self.options_for(head.type)), self.free()):
                return  # the cluster is full: the job stays queued in the store
            job = self.store.claim_next(self.worker)
            if job is None:
                return
            self.submit(job, attempt=1)

    def submit(self, job: Job, attempt: int, first_loss: str = "") -> None:
        options = self.options_for(job.type)
        job_dir = self.layout.job_dir(job.id)
        files = {role: job_dir / "inputs" / info["file"] for role, info in job.inputs.items()}
        if self.shared:
            inputs: dict[str, Any] = {role: str(path) for role, path in files.items()}
        else:
            inputs = {role: (path.name, path.read_bytes()) for role, path in files.items()}
        ref = run_task.options(**options, name=f"orbitex {job.type} {job.id}").remote(
            job.id, attempt, job.type, job.params, inputs, str(job_dir) if self.shared else None, self.board)
        self.flights[job.id] = Flight(job, ref, attempt, options, first_loss=first_loss)
        self.store.report(job.id, self.worker, 0.0, f"waiting for a Ray worker with {demand(options)}"
                          + (f" (attempt {attempt}: {first_loss})" if first_loss else ""))

    def sync(self) -> None:
        if not self.flights:
            return
        now = time.time()
        cancelled = {j.id for j in self.store.stale_cancels(self.worker, now + 1.0)}
        for job_id in cancelled & set(self.flights):
            flight = self.flights[job_id]
            if flight.cancel_at is None:
                flight.cancel_at = now  # the board tells the task below: its next progress call raises Cancelled
            # Ray's own cancel: force, since a KeyboardInterrupt (the gentle kind) can land inside an import and
            # leave a reused worker half-initialised; at once for a task still in Ray's queue, after the grace
            # for one that ignores its cancel check
            if not flight.forced and (not flight.started or now - flight.cancel_at > self.cancel_grace_s):
                flight.forced = True
                ray.cancel(flight.ref, force=True)
        try:
            latest = ray.get(self.board.sync.remote(sorted(cancelled)), timeout=10.0)
        except (ray.exceptions.RayError, TimeoutError):
            return  # the board is restarting
        for job_id, (attempt, fraction, stage, node) in latest.items():
            flight = self.flights.get(job_id)
            if flight is None or attempt != flight.attempt:
                continue
            flight.started = True
            self.store.report(job_id, self.worker, fraction, stage)
            if node != flight.node:
                flight.node = node
                self.store.set_node(job_id, self.worker, node)

    def settle(self, timeout: float) -> None:
        if not self.flights:
            return
        by_ref = {f.ref: f for f in self.flights.values()}
        ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=timeout)
        for ref in ready:
            flight = by_ref[ref]
            del self.flights[flight.job.id]
            self.finish(flight)

    def finish(self, flight: Flight) -> None:
        job, note = flight.job, (f"ran twice: {flight.first_loss}; " if flight.first_loss else "")
        try:
            answer = ray.get(flight.ref)
        except ray.exceptions.TaskCancelledError:
            self.store.finish(job.id, self.worker, "cancelled", "cancelled by request")
            return
        except ray.exceptions.OutOfMemoryError as exc:
            self.store.finish(job.id, self.worker, "failed", f"{note}Ray stopped the job: its node ran out of memory"
                                                             f" ({_first_line(exc)})")
            return
        except LOST_ERRORS as exc:
            if flight.cancel_at is not None:
                self.store.finish(job.id, self.worker, "cancelled", "cancelled by request (its Ray worker was stopped)")
                return
            why = f"its Ray worker{' on ' + flight.node if flight.node else ''} was lost ({type(exc).__name__})"
            if self.on_worker_lost == "retry" and flight.attempt == 1:
                print(f"job {job.id}: {why}; running it again", flush=True)
                self.submit(job, attempt=2, first_loss=why)
                return
            self.store.finish(job.id, self.worker, "interrupted", f"interrupted: {note}{why}; submit it again")
            return
        except ray.exceptions.RayError as exc:
            self.store.finish(job.id, self.worker, "failed", f"{note}Ray could not run the job:"
                                                             f" {type(exc).__name__}: {_first_line(exc)}")
            return
        outcome: Outcome = answer["outcome"]
        job_dir = self.layout.job_dir(job.id)
        if answer["files"]:
            results = fresh_results_dir(job_dir)
            for name, content in answer["files"].items():
                (results / name).parent.mkdir(parents=True, exist_ok=True)
                (results / name).write_bytes(content)
        if outcome.traceback:
            (job_dir / "job.log").write_text(outcome.traceback)
        if answer["node"] and answer["node"] != flight.node:
            self.store.set_node(job.id, self.worker, answer["node"])
        message = (note + outcome.message).rstrip("; ") if note else outcome.message
        self.store.finish(job.id, self.worker, outcome.state, message, outcome.entries)
        print(f"job {job.id} ({job.type}) on {answer['node']}: {outcome.state}", flush=True)

    def shutdown(self) -> None:
        for flight in self.flights.values():
            ray.cancel(flight.ref, force=True)


def _job_types() -> list[str]:
    from . import registry

    return sorted(registry.job_types())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _describe(totals: dict[str, float]) -> str:
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    return f"{nodes} node(s), {totals.get('CPU', 0):g} CPU, {totals.get('GPU', 0):g} GPU"


def reachable(address: str) -> str:
    """'' when something listens at a Ray address (HOST:PORT or ray://HOST:PORT), else why not."""
    if address in ("", "auto", "local"):
        return ""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=3.0):
            return ""
    except ValueError:
        return f"not HOST:PORT or ray://HOST:PORT: {address!r}"
    except OSError as exc:
        return f"nothing answers at {hostport} ({exc.strerror or exc})"


def connect(address: str, num_cpus: int | None, num_gpus: int | None, stopping: threading.Event) -> bool:
    """Wait until the cluster answers, then join it (or start one on this machine, no address)."""
    while address:
        problem = reachable(address)
        if not problem:
            break
        print(f"waiting for the Ray cluster at {address}: {problem}; jobs stay queued", flush=True)
        if stopping.wait(CONNECT_RETRY_S):
            return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **options)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.service.ray_engine")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--address", default="", help="Ray address (HOST:PORT, auto, ray://HOST:10001); none: a"
                                                      " cluster of this machine alone, started here")
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--num-gpus", type=int, default=None)
    parser.add_argument("--resources", default="")
    parser.add_argument("--on-worker-lost", choices=["retry", "interrupt"], default="retry")
    parser.add_argument("--data-mode", choices=["shared", "object-store"], default="shared")
    parser.add_argument("--cancel-grace-s", type=float, default=10.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when this process ends (stdin EOF)
    layout = DataLayout(args.data)
    store = JobStore(layout.database)
    wake, stopping = threading.Event(), threading.Event()

    def watch_stdin() -> None:  # a line: a job was submitted; end of file: the server is gone
        for _ in os.fdopen(0, "rb"):
            wake.set()
        stopping.set()
        wake.set()
        threading.Timer(15.0, os._exit, (0,)).start()  # if an orderly Ray shutdown hangs

    threading.Thread(target=watch_stdin, daemon=True).start()
    if not connect(args.address, args.num_cpus, args.num_gpus, stopping):
        return 0
    dispatcher = Dispatcher(store, layout, args.worker_id, parse_resources(args.resources), args.on_worker_lost,
                            args.data_mode == "shared", args.cancel_grace_s)
    try:
        while not stopping.is_set():
            dispatcher.step()
            if not dispatcher.flights:
                wake.wait(IDLE_S)
                wake.clear()
    finally:
        dispatcher.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
