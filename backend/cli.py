"""`python -m backend VERB ...`: the pipelines from the command line, plus `serve` and `models`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import pipelines
from .errors import OrbitexError
from .progress import BarProgress


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend", description="Orbitex compute backend")
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name in pipelines.PIPELINES:
        module = pipelines.load(name)
        sub = verbs.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(sub)
    serve = verbs.add_parser("serve", help="run the HTTP job service")
    from .service.server import add_arguments as add_serve_arguments

    add_serve_arguments(serve)
    from .models.cli import add_arguments as add_models_arguments

    add_models_arguments(verbs.add_parser("models", help="list, download and verify model weights"))
    return parser


def run_pipeline(name: str, args: argparse.Namespace) -> int:
    module = pipelines.load(name)
    inputs = {role: Path(getattr(args, role)) for role in {**module.INPUTS, **module.OPTIONAL_INPUTS}
              if getattr(args, role, None) is not None}
    fields = {f for f in module.Params.__dataclass_fields__}
    params = pipelines.parse_params(module.Params, {k: v for k, v in vars(args).items() if k in fields and v is not None})
    out_dir = Path(args.out)
    bar = BarProgress()
    try:
        results = module.run(inputs, params, out_dir, bar)
    finally:
        bar.close()
    print(json.dumps({k: str(v) for k, v in results.items()}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the service starts without importing any pipeline (they load per job type)
        from .service.server import add_arguments as add_serve_arguments, serve

        serve_parser = argparse.ArgumentParser(prog="python -m backend serve", description="run the HTTP job service")
        add_serve_arguments(serve_parser)
        return serve(serve_parser.parse_args(argv[1:]))
    if argv[:1] == ["models"]:  # the weights registry needs no pipeline (nor torch)
        from .models.cli import add_arguments as add_models_arguments, run as run_models

        models_parser = argparse.ArgumentParser(prog="python -m backend models", description="model weights")
        add_models_arguments(models_parser)
        try:
            return run_models(models_parser.parse_args(argv[1:]))
        except OrbitexError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "serve":
            from .service.server import serve

            return serve(args)
        if args.verb == "models":
            from .models.cli import run as run_models

            return run_models(args)
        return run_pipeline(args.verb, args)
    except OrbitexError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
