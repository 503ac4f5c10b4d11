"""The HTTP process's handle on its worker process: start, wake, watch, restart, stop.

The worker process is the local engine's (backend.service.worker, runs jobs itself) or the Ray
engine's (backend.service.ray_engine, the Ray driver that sends jobs to a cluster); `EngineProcess`
says which and how its faults are settled.

A watch thread checks twice a second that the worker lives. If it died (a crash, the OOM
killer) its running job fails with a message saying so and a fresh worker starts. If a running
job ignores a cancel for CANCEL_GRACE_S (a pipeline that stopped calling progress), the worker
is killed, the job is marked cancelled and a fresh worker starts: cancel always takes effect.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .layout import DataLayout
from .store import JobStore

CANCEL_GRACE_S = 10.0
RESOURCE_KEYS = frozenset({"num_cpus", "num_gpus", "memory", "resources"})  # Ray task options we pass on
WATCH_EVERY_S = 0.5
RESTART_DELAY_S = 1.0


@dataclass(frozen=True)
class EngineProcess:
    """The process a supervisor keeps alive, and what happens to its running jobs when it dies."""

    module: str = "backend.service.worker"
    args: tuple[str, ...] = ()
    log_name: str = "worker.log"
    lost_state: str = "failed"
    lost_message: str = ("the worker process stopped unexpectedly (exit code {code}, e.g. out of"
                         " memory); see logs/worker.log in the backend's data folder")
    # kill the process when a job ignores its cancel (right for one job per process; the Ray engine
    # cancels single tasks itself)
    kill_on_stale_cancel: bool = True
    restart_delays_s: tuple[float, ...] = field(default=(RESTART_DELAY_S,))  # then the last one, repeated
    stop_wait_s: float = 2.0  # after closing its stdin, before SIGTERM


class WorkerSupervisor:
    def __init__(self, layout: DataLayout, store: JobStore, cancel_grace_s: float = CANCEL_GRACE_S,
                 engine: EngineProcess = EngineProcess()) -> None:
        self.layout, self.store, self.cancel_grace_s, self.engine = layout, store, cancel_grace_s, engine
        self._restarts = 0
        self._spawned_at = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._worker_id = ""
        self._log: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._log = open(self.layout.logs / self.engine.log_name, "ab")
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="orbitex-worker-watch", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        self._worker_id = uuid.uuid4().hex
        self._spawned_at = time.monotonic()
        package_root = str(Path(__file__).resolve().parents[2])  # the folder holding `backend`
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", self.engine.module, "--data", str(self.layout.root),
             "--worker-id", self._worker_id, *self.engine.args],
            stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT, env=env,
            # its own session: a Ctrl-C at the server's terminal reaches the server, which then stops the
            # worker in order (and marks its job interrupted) instead of both dying at once
            start_new_session=os.name == "posix")

    def wake(self) -> None:
        """Tell the worker a job is waiting (it also polls once a second)."""
        if not self._lock.acquire(blocking=False):  # called from the event loop: never wait here
            return
        try:
            if self._proc is not None and self._proc.stdin is not None:
                self._proc.stdin.write(b"\n")
                self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the watch thread restarts a dead worker
        finally:
            self._lock.release()

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_EVERY_S):
            with self._lock:
                if self._stopping.is_set() or self._proc is None:
                    return
                code = self._proc.poll()
                if code is not None:
                    self.store.requeue_unstarted(self._worker_id)
                    self.store.end_running(self._worker_id, self.engine.lost_state,
                                           self.engine.lost_message.format(code=code))
                    delays = self.engine.restart_delays_s
                    # back off while it keeps dying young (a Ray cluster that is gone), not after a long life
                    self._restarts = 1 if time.monotonic() - self._spawned_at > 60.0 else self._restarts + 1
                    if self._stopping.wait(delays[min(self._restarts, len(delays)) - 1]):
                        return
                    self._spawn()
                elif (self.engine.kill_on_stale_cancel
                      and self.store.stale_cancels(self._worker_id, time.time() - self.cancel_grace_s)):
                    self._terminate()
                    self.store.end_running(self._worker_id, "cancelled",
                                           "cancelled by request (the job did not stop by itself, so its worker"
                                           " process was stopped)")
                    self._spawn()

    def _terminate(self, wait_s: float = 5.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()  # the worker exits on end-of-file
            except OSError:
                pass
        try:
            proc.wait(timeout=self.engine.stop_wait_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """Stop the worker; a job it was running becomes interrupted."""
        self._stopping.set()
        with self._lock:
            self._terminate()
            self.store.requeue_unstarted(self._worker_id)
            self.store.mark_interrupted("interrupted: the backend was stopped while this job was running;"
                                        " submit it again", worker=self._worker_id)
            self._proc = None
        if self._log is not None:
            self._log.close()


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """`serve` options choosing and tuning the engine that runs jobs."""
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local (default): one worker process on this machine runs jobs one at a time;"
                             " ray: every job is a Ray task, as many at once as the cluster has GPUs/CPUs")
    parser.add_argument("--threads", type=int, default=0,
                        help="local engine: CPU threads per job (default 0: the cores other processes leave free,"
                             " re-checked while it runs); Ray jobs get their task's num_cpus (--ray-resources)")
    parser.add_argument("--ray-address", default="",
                        help="Ray cluster to use: HOST:PORT of the head (GCS port, usually 6379), auto (the one this"
                             " machine joined) or ray://HOST:10001 (Ray client); none: start a Ray cluster of this"
                             " machine alone (all its GPUs)")
    parser.add_argument("--ray-num-gpus", type=int, default=None,
                        help="without --ray-address: GPUs the local Ray cluster offers (default: those it finds)")
    parser.add_argument("--ray-num-cpus", type=int, default=None,
                        help="without --ray-address: CPUs the local Ray cluster offers (default: all)")
    parser.add_argument("--ray-resources", default="",
                        help='Ray task options per job type as JSON (or @FILE), merged over the defaults, e.g.'
                             ' \'{"texture": {"num_gpus": 1, "num_cpus": 4}, "render-orbit": {"num_cpus": 2}}\';'
                             " defaults: 1 GPU + 1 CPU for texture, bake, reconstruct, refine, complete (1 CPU where"
                             " the cluster has no GPU), 1 CPU for the others")
    parser.add_argument("--on-worker-lost", choices=["retry", "interrupt"], default="retry",
                        help="a job whose Ray worker or node dies: run it once more elsewhere (default; its message"
                             " says it ran twice) or mark it interrupted; a second loss always interrupts")
    parser.add_argument("--ray-data", choices=["auto", "shared", "object-store"], default="auto",
                        help="how inputs and results reach Ray workers: shared (every node sees this data folder at"
                             " the same path), object-store (sent as bytes through Ray); auto: shared for a local"
                             " cluster, object-store with --ray-address")


def parse_resources(text: str) -> dict[str, dict[str, Any]]:
    """--resources: JSON (or @FILE holding it) {job type: {num_cpus, num_gpus, memory, resources}}."""
    if not text:
        return {}
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        table = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--ray-resources is not valid JSON ({exc})") from None
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ValueError('--ray-resources must map job types to options, e.g. {"texture": {"num_gpus": 1, "num_cpus": 4}}')
    for job_type, options in table.items():
        unknown = sorted(set(options) - RESOURCE_KEYS)
        if unknown:
            raise ValueError(f"--ray-resources[{job_type!r}]: unknown option(s) {', '.join(unknown)};"
                             f" known: {', '.join(sorted(RESOURCE_KEYS))}")
    return table


def engine_process(args: argparse.Namespace) -> EngineProcess:
    """The worker process `serve`'s options ask for (they were checked by the parser)."""
    if args.threads < 0:
        raise ValueError(f"--threads must be positive (or 0 for what is free), got {args.threads}")
    if args.engine == "local":
        return EngineProcess(args=("--threads", str(args.threads)))
    if args.threads:
        raise ValueError("--threads is the local engine's; give Ray jobs CPUs with --ray-resources '{\"TYPE\": "
                         "{\"num_cpus\": N}}'")
    parse_resources(args.ray_resources)  # ValueError now rather than a Ray engine that fails at every start
    data_mode = args.ray_data if args.ray_data != "auto" else ("object-store" if args.ray_address else "shared")
    extra = ["--on-worker-lost", args.on_worker_lost, "--data-mode", data_mode,
             "--cancel-grace-s", str(args.cancel_grace_s)]
    if args.ray_address:
        extra += ["--address", args.ray_address]
    for flag, value in (("--num-cpus", args.ray_num_cpus), ("--num-gpus", args.ray_num_gpus)):
        if value is not None:
            extra += [flag, str(value)]
    if args.ray_resources:
        extra += ["--resources", args.ray_resources]
    return EngineProcess(
        module="backend.service.ray_engine", args=tuple(extra), log_name="ray-engine.log",
        lost_state="interrupted",
        lost_message=("interrupted: the Ray engine process stopped (exit code {code}; the Ray cluster may have gone"
                      " away), and Ray tasks end with it; see logs/ray-engine.log; submit it again"),
        kill_on_stale_cancel=False, restart_delays_s=(1.0, 5.0, 15.0, 30.0), stop_wait_s=20.0)
