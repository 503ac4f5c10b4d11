"""Batch throughput: N small render-orbit jobs on the local engine (one worker) vs the Ray engine
(a Ray cluster of this machine with W workers), through `python -m backend batch`'s run_batch.

    python bench/batch.py [--jobs 8] [--workers 2] [--frames 8] [--size 96]

Prints, per engine: wall time from the first submit to the last result (backend start-up, which
for Ray includes starting the cluster, is printed apart), jobs/min, the mean job run time, and the
ratio Ray/local; and the Ray overhead per job: W x wall(Ray) / N - wall(local) / N, the worker
time each job costs beyond what the local worker spends on it.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.service.batch import StartedBackend, run_batch  # noqa: E402


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_engine(engine: str, files: list[Path], params: dict, work: Path, extra_args: list[str]) -> dict:
    start = time.monotonic()
    backend = StartedBackend(work / f"{engine}-data", engine, "", extra_args)
    up = time.monotonic() - start
    try:
        with httpx.Client(base_url=backend.url, headers={"Authorization": f"Bearer {backend.token}"}, timeout=120) as client:
            if engine == "ray":  # wait for the engine to join its cluster, so start-up is not counted as work
                warm = run_batch(client, "render-orbit", files[:1], params, {}, work / f"{engine}-warm", 600, lambda _: None)
                assert warm[0]["state"] == "done", warm[0]["message"]
                up = time.monotonic() - start
            t0 = time.monotonic()
            jobs = run_batch(client, "render-orbit", files, params, {}, work / f"{engine}-out", 3600, lambda _: None)
            wall = time.monotonic() - t0
    finally:
        backend.stop()
    bad = [j["message"] for j in jobs if j["state"] != "done"]
    assert not bad, bad
    runs = [_stamp(j["finished"]) - _stamp(j["started"]) for j in jobs]
    return {"up": up, "wall": wall, "mean_run": sum(runs) / len(runs)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    import trimesh

    with tempfile.TemporaryDirectory(prefix="orbitex-bench-batch-") as scratch:
        work = Path(scratch)
        files = []
        for i in range(args.jobs):
            path = work / f"mesh{i}.glb"
            path.write_bytes(trimesh.creation.torus(0.35, 0.12 + 0.01 * i).export(file_type="glb"))
            files.append(path)
        params = {"frames": args.frames, "size": args.size}
        local = run_engine("local", files, params, work, [])
        ray = run_engine("ray", files, params, work, ["--ray-num-cpus", str(args.workers), "--ray-num-gpus", "0"])
    n, w = args.jobs, args.workers
    print(f"{n} render-orbit jobs ({args.frames} frames/orbit at {args.size}^2), Ray with {w} workers")
    for name, r in (("local", local), ("ray", ray)):
        print(f"  {name:5s}: start-up {r['up']:5.1f} s, wall {r['wall']:6.1f} s, {60 * n / r['wall']:5.2f} jobs/min,"
              f" mean job run {r['mean_run']:5.2f} s")
    print(f"  throughput ratio ray/local: {local['wall'] / ray['wall']:.2f}x (ideal {w}x on {w} free cores)")
    print(f"  Ray overhead per job: {w * ray['wall'] / n - local['wall'] / n:+.2f} s of worker time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
