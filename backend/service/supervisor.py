"""The HTTP process's handle on its worker process: start, wake, watch, restart, stop.

A watch thread checks twice a second that the worker lives. If it died (a crash, the OOM
killer) its running job fails with a message saying so and a fresh worker starts. If a running
job ignores a cancel for CANCEL_GRACE_S (a pipeline that stopped calling progress), the worker
is killed, the job is marked cancelled and a fresh worker starts: cancel always takes effect.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import IO

from .layout import DataLayout
from .store import JobStore

CANCEL_GRACE_S = 10.0
WATCH_EVERY_S = 0.5
RESTART_DELAY_S = 1.0


class WorkerSupervisor:
    def __init__(self, layout: DataLayout, store: JobStore, cancel_grace_s: float = CANCEL_GRACE_S) -> None:
        self.layout, self.store, self.cancel_grace_s = layout, store, cancel_grace_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._worker_id = ""
        self._log: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._log = open(self.layout.logs / "worker.log", "ab")
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="orbitex-worker-watch", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        self._worker_id = uuid.uuid4().hex
        package_root = str(Path(__file__).resolve().parents[2])  # the folder holding `backend`
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "backend.service.worker", "--data", str(self.layout.root),
             "--worker-id", self._worker_id],
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
                    self.store.end_running(self._worker_id, "failed",
                                           f"the worker process stopped unexpectedly (exit code {code}, e.g. out of"
                                           " memory); see logs/worker.log in the backend's data folder")
                    time.sleep(RESTART_DELAY_S)
                    self._spawn()
                elif self.store.stale_cancels(self._worker_id, time.time() - self.cancel_grace_s):
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
            proc.wait(timeout=min(wait_s, 2.0))
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
            self.store.mark_interrupted("interrupted: the backend was stopped while this job was running;"
                                        " submit it again", worker=self._worker_id)
            self._proc = None
        if self._log is not None:
            self._log.close()
