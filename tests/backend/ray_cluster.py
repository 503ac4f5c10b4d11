"""A Ray cluster of this machine for the Ray engine tests, owned by one helper process.

`python ray_cluster.py CPUS GPUS` starts a Ray head (logical GPUs: nothing needs CUDA), prints
`ADDRESS host:port`, and shuts the cluster down when its stdin closes; `RayCluster` runs it.
Killing the helper with SIGKILL takes its Ray processes with it (they share its fate).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


class RayCluster:
    def __init__(self, cpus: int = 2, gpus: int = 2, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ, **(env or {}))
        full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(HERE)])
        full_env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__)), str(cpus), str(gpus)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=full_env, text=True)
        self.address = ""
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("ADDRESS "):
                    self.address = line.split()[1]
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120) or not self.address:
            self.kill()
            raise RuntimeError("the Ray test cluster did not start")

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _serve(cpus: int, gpus: int) -> None:
    import ray

    ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, object_store_memory=150 * 1024 * 1024,
             configure_logging=False, log_to_driver=False)
    print("ADDRESS", ray.get_runtime_context().gcs_address, flush=True)
    sys.stdin.read()  # until the test closes our stdin
    ray.shutdown()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
