"""`python -m backend VERB ...`: every pipeline as a verb (from the registry), plus `serve` and `models`.

Only the module of the chosen verb is imported, so `serve` starts even if a pipeline's optional
dependency is broken, and `models` needs no torch.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from . import pipelines, threads
from .errors import OrbitexError
from .progress import BarProgress

# verb -> (module with add_arguments(parser) and run(args) -> int, help)
TOOLS = {
    "serve": ("backend.service.server", "run the HTTP job service"),
    "models": ("backend.models.cli", "list, download and verify model weights"),
    "batch": ("backend.service.batch", "run one job type over many inputs through the service (local or Ray engine)"),
}


def build_parser(verb: str | None) -> argparse.ArgumentParser:
    """The parser for `verb` alone when it is known, else for every verb (for --help and errors)."""
    parser = argparse.ArgumentParser(prog="python -m backend", description="Orbitex compute backend")
    verbs = parser.add_subparsers(dest="verb", required=True)
    known = [*pipelines.PIPELINES, *TOOLS]
    for name in [verb] if verb in known else known:
        if name in TOOLS:
            module_name, help_text = TOOLS[name]
            module = importlib.import_module(module_name)
        else:
            module = pipelines.load(name)
            help_text = (module.__doc__ or name).strip().splitlines()[0]
        sub = verbs.add_parser(name, help=help_text, description=module.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        if name not in TOOLS:
            sub.add_argument("--threads", type=int, default=0,
                             help="CPU threads for torch, OpenCV, numba and BLAS (default 0: the cores that are free)")
    return parser


def params_from_flags(params_cls: type, flags: dict[str, Any]) -> dict[str, Any]:
    """The JSON params a job spec would carry, from parsed flags: a flag's dest names its field, with
    dots for a nested dataclass field (dest "bake.method" -> {"bake": {"method": ...}}); unset flags
    (None) keep the defaults, flags of no field (--out, --threads) are left out."""
    fields = set(params_cls.__dataclass_fields__)
    values: dict[str, Any] = {}
    for dest, value in flags.items():
        head, *rest = dest.split(".")
        if value is None or head not in fields:
            continue
        target = values
        for part in [head, *rest][:-1]:
            target = target.setdefault(part, {})
        target[[head, *rest][-1]] = value
    return values


def run_pipeline(name: str, args: argparse.Namespace) -> int:
    module = pipelines.load(name)
    roles = {**module.INPUTS, **getattr(module, "OPTIONAL_INPUTS", {})}
    inputs = {role: Path(getattr(args, role)) for role in roles if getattr(args, role, None) is not None}
    params = pipelines.parse_params(module.Params, params_from_flags(module.Params, vars(args)))
    notes = logging.getLogger("orbitex")  # what a pipeline decided on its own (e.g. the views frame), to stderr
    if not notes.handlers:
        notes.addHandler(logging.StreamHandler())
        notes.setLevel(logging.INFO)
    threads.configure(args.threads)
    bar = BarProgress()
    with contextlib.ExitStack() as stack:
        if getattr(args, "allow_outside_paths", False):  # bake: the user's own files, on request
            from .assets.viewset import outside_paths_allowed

            stack.enter_context(outside_paths_allowed())
        try:
            results = module.run(inputs, params, Path(args.out), threads.Rebalancing(bar, args.threads))
        finally:
            bar.close()
    print(json.dumps({k: str(v) for k, v in results.items()}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = argv[0] if argv else None
    args = build_parser(verb).parse_args(argv)
    try:
        if args.verb in TOOLS:
            return importlib.import_module(TOOLS[args.verb][0]).run(args)
        return run_pipeline(args.verb, args)
    except OrbitexError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
