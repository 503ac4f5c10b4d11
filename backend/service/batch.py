"""batch: run one job type over many inputs at once through the job service, with overall progress.

    python -m backend batch FOLDER_OR_LIST... --job complete --out DIR [--param resolution=64]
                            [--engine ray [--ray-address HOST:PORT]] | [--backend URL --token-file FILE]

Each input (a file; every file of a folder; or a .txt list of paths, one a line) becomes one job,
uploaded as the job type's main input; `--with ROLE=PATH` adds the same extra input to every job
(e.g. the reference image of texture jobs). Without --backend a backend is started for the batch
(data folder OUT/.orbitex-backend) with the engine asked for, and stopped at the end. Progress is
printed as done/failed/running/queued overall and per node; results land in OUT/<input name>/,
and OUT/batch.json lists every job with its state and message. Exit code 1 when a job failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import InputError
from .. import pipelines

LISTENING = "Orbitex backend listening on "
POLL_S = 1.0
END_STATES = ("done", "failed", "cancelled", "interrupted")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="input files, folders (every file in them) or .txt lists of paths")
    parser.add_argument("--job", required=True, choices=sorted(pipelines.PIPELINES), help="the job type to run on each")
    parser.add_argument("--out", required=True, type=Path, help="folder for the results (one sub-folder per input)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a job parameter for every job (VALUE read as JSON when it parses, else as text)")
    parser.add_argument("--with", dest="extra", action="append", default=[], metavar="ROLE=PATH",
                        help="an extra input file given to every job (e.g. image=reference.png for texture)")
    parser.add_argument("--backend", default="", help="URL of a running backend (default: start one for the batch)")
    parser.add_argument("--token-file", type=Path, default=None, help="with --backend: the file holding its token")
    parser.add_argument("--engine", choices=["local", "ray"], default="local", help="engine of the backend started")
    parser.add_argument("--ray-address", default="", help="with --engine ray: the Ray cluster (default: this machine)")
    parser.add_argument("--timeout-s", type=float, default=24 * 3600.0, help="give up (and cancel) after this long")


def expand_inputs(items: list[str]) -> list[Path]:
    """Files named, files of folders named, and paths listed in .txt files, in order, once each."""
    found: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        elif path.suffix.lower() == ".txt" and path.is_file():
            found += [Path(line.strip()).expanduser() for line in path.read_text().splitlines()
                      if line.strip() and not line.lstrip().startswith("#")]
        else:
            found.append(path)
    missing = [str(p) for p in found if not p.is_file()]
    if missing:
        raise InputError(f"no such input file(s): {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    if not found:
        raise InputError("no input files (folders given hold none)")
    return list(dict.fromkeys(found))


def parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{what} {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def node_summary(jobs: list[dict[str, Any]]) -> str:
    """'3/8 done, 1 failed, 2 running, 2 queued | vm-a: 2 running 3 done | vm-b: ...'."""
    states = Counter(j["state"] for j in jobs)
    ended_badly = sum(states[s] for s in ("failed", "cancelled", "interrupted"))
    head = (f"{states['done']}/{len(jobs)} done, {ended_badly} failed, {states['running']} running,"
            f" {states['queued']} queued")
    per_node: dict[str, Counter[str]] = {}
    for job in jobs:
        if job.get("node"):
            per_node.setdefault(job["node"], Counter())[job["state"]] += 1
    parts = [f"{node}: " + " ".join(f"{n} {s}" for s, n in sorted(c.items())) for node, c in sorted(per_node.items())]
    return " | ".join([head, *parts])


class StartedBackend:
    """`python -m backend serve` for the batch's time, on its own data folder."""

    def __init__(self, data: Path, engine: str, ray_address: str, serve_args: tuple[str, ...] | list[str] = ()) -> None:
        args = [sys.executable, "-m", "backend", "serve", "--data", str(data), "--port", "0", "--engine", engine]
        if ray_address:
            args += ["--ray-address", ray_address]
        args += list(serve_args)
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.url = ""
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith(LISTENING):
                    self.url = line[len(LISTENING):].strip()
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120) or not self.url:
            self.stop()
            raise InputError(f"the backend for the batch did not start; see {data / 'logs'}")
        self.token = (data / "token").read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_batch(client: Any, job_type: str, files: list[Path], params: dict[str, Any], extra: dict[str, Path],
              out: Path, timeout_s: float, report: Any = print) -> list[dict[str, Any]]:
    """Submit one job per file, follow them to their end, download the results; the end records."""
    module = pipelines.load(job_type)
    role = next(iter(module.INPUTS))
    names = _unique_names(files)
    submitted: dict[str, tuple[Path, str]] = {}
    spec = json.dumps({"type": job_type, "params": params})
    for path, name in zip(files, names):
        uploads = {role: (path.name, path.read_bytes())} | {r: (p.name, p.read_bytes()) for r, p in extra.items()}
        response = client.post("/jobs", data={"spec": spec}, files=uploads)
        if response.status_code != 201:
            raise InputError(f"{path}: the backend refused the job: {response.json().get('detail', response.text)}")
        submitted[response.json()["id"]] = (path, name)
    start, last_line, records = time.monotonic(), "", {}
    while True:
        listed = {j["id"]: j for j in client.get("/jobs").json()["jobs"] if j["id"] in submitted}
        records.update(listed)
        line = node_summary(list(records.values()))
        if line != last_line:
            report(f"[{time.monotonic() - start:6.1f} s] {line}")
            last_line = line
        if all(j["state"] in END_STATES for j in records.values()) and len(records) == len(submitted):
            break
        if time.monotonic() - start > timeout_s:
            for job_id, job in records.items():
                if job["state"] not in END_STATES:
                    client.post(f"/jobs/{job_id}/cancel")
            raise InputError(f"the batch took longer than {timeout_s:.0f} s; its unfinished jobs were cancelled")
        time.sleep(POLL_S)
    for job_id, job in records.items():
        path, name = submitted[job_id]
        job["input"] = str(path)
        if job["state"] != "done":
            continue
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for result in job["results"]:
            with client.stream("GET", result["url"]) as response, open(folder / result["file"], "wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
    return [records[j] for j in submitted]


def _unique_names(files: list[Path]) -> list[str]:
    seen: Counter[str] = Counter()
    names = []
    for path in files:
        seen[path.stem] += 1
        names.append(path.stem if seen[path.stem] == 1 else f"{path.stem}-{seen[path.stem]}")
    return names


def run(args: argparse.Namespace) -> int:
    import httpx

    files = expand_inputs(args.inputs)
    params = {k: _json_or_text(v) for k, v in parse_pairs(args.param, "--param").items()}
    extra = {role: Path(p).expanduser() for role, p in parse_pairs(args.extra, "--with").items()}
    for role, path in extra.items():
        if not path.is_file():
            raise InputError(f"--with {role}={path}: no such file")
    args.out.mkdir(parents=True, exist_ok=True)
    backend = None
    if args.backend:
        if args.token_file is None:
            raise InputError("--backend needs --token-file (the file 'token' in that backend's data folder)")
        url, token = args.backend.rstrip("/"), args.token_file.read_text().strip()
    else:
        backend = StartedBackend(args.out / ".orbitex-backend", args.engine, args.ray_address)
        url, token = backend.url, backend.token
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
            jobs = run_batch(client, args.job, files, params, extra, args.out, args.timeout_s)
    finally:
        if backend is not None:
            backend.stop()
    (args.out / "batch.json").write_text(json.dumps(
        [{k: j.get(k) for k in ("input", "id", "state", "message", "node", "started", "finished")} for j in jobs],
        indent=2))
    bad = [j for j in jobs if j["state"] != "done"]
    for job in bad:
        print(f"{job['input']}: {job['state']}: {job['message']}", file=sys.stderr)
    print(f"{len(jobs) - len(bad)} of {len(jobs)} done; results in {args.out}")
    return 1 if bad else 0
