"""A small pipeline for the service tests (registered through ORBITEX_EXTRA_PIPELINES).

It reads its `data` input, then works for `steps` steps of `delay` seconds each (busy CPU or
sleeping), reporting progress every step, and writes the input upper-cased plus a folder result.
`fail` makes it raise an InputError (naming its input by name or by full path), a plain bug or a
FileNotFoundError at step `fail_at`, hang, or exit. `report_threads` adds a result naming the
torch threads the job ran with.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backend.errors import InputError
from backend.progress import Progress

NAME = "fixture-sleep"
INPUTS = {"data": "a small text file"}
OPTIONAL_INPUTS = {"extra": "another text file, appended", "mesh": "a mesh, loaded with backend.assets.load.load_mesh"}


@dataclass
class Params:
    steps: int = 5
    delay: float = 0.05
    busy: bool = False
    fail: Literal["none", "input", "input-path", "missing-file", "bug", "hang", "exit"] = "none"
    fail_at: int = 0
    report_threads: bool = False


def add_arguments(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("data")


def run(inputs: dict[str, Path], params: Params, out_dir: Path, progress: Progress) -> dict[str, Path]:
    text = inputs["data"].read_text()
    if "mesh" in inputs:
        from backend.assets.load import load_mesh

        text += f"\n{load_mesh(inputs['mesh']).num_faces} triangles\n"
    if "extra" in inputs:
        text += inputs["extra"].read_text()
    for step in range(params.steps):
        if params.fail != "none" and step == params.fail_at:
            if params.fail == "input":
                raise InputError(f"{inputs['data'].name}: fixture says the input is bad")
            if params.fail == "input-path":  # a message naming the input by its full server path
                raise InputError(f"{inputs['data'].resolve()}: fixture says the input is bad")
            if params.fail == "missing-file":  # a library error carrying a full server path
                (inputs["data"].resolve().parent / "missing.txt").read_text()
            if params.fail == "hang":  # stops reporting progress: only the supervisor can cancel this
                time.sleep(3600)
            if params.fail == "exit":  # the worker process dies (as if killed by the OOM killer)
                os._exit(3)
            raise ZeroDivisionError("fixture bug")
        progress(step / params.steps, f"step {step}")
        end = time.monotonic() + params.delay
        if params.busy:
            while time.monotonic() < end:
                sum(i * i for i in range(1000))
        else:
            time.sleep(params.delay)
    out = out_dir / "echo.txt"
    out.write_text(text.upper())
    folder = out_dir / "parts"
    folder.mkdir()
    for i in range(3):
        (folder / f"part{i}.txt").write_text(f"part {i}\n")
    results = {"echo": out, "parts": folder}
    if params.report_threads:
        import torch

        results["threads"] = out_dir / "threads.txt"
        results["threads"].write_text(str(torch.get_num_threads()))
    progress(1.0, "done")
    return results
