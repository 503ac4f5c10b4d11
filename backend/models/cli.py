"""`python -m backend models list | download NAME | verify [NAME]`: the weights registry by hand."""
from __future__ import annotations

import argparse
import json

from . import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="known models, their size and where they are installed")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    download = actions.add_parser("download", help="fetch a model into the Hugging Face cache (pinned revision)")
    download.add_argument("name", choices=sorted(registry.MODELS))
    verify = actions.add_parser("verify", help="check installed model files (all installed ones by default)")
    verify.add_argument("name", nargs="?", choices=sorted(registry.MODELS))


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        rows = registry.status_rows()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"models config: {registry.config_path()}; models_dir: {registry.models_dir() or '(not set)'}")
            for row in rows:
                print(f"{row['name']:<26} {row['size']:>15}  {row['state']}\n{'':<26} {row['source']}: {row['description']}")
        return 0
    if args.action == "download":
        path = registry.download(args.name)
        print(f"{args.name}: installed at {path}")
        return 0
    names = [args.name] if args.name else [n for n in registry.MODELS if registry.locate(n) is not None]
    if not names:
        print("no model is installed; see: python -m backend models list")
        return 0
    failed = 0
    for name in names:
        problems = registry.verify(name)
        print(f"{name}: {'ok' if not problems else 'PROBLEMS'}")
        for problem in problems:
            print(f"  {problem}")
        failed += bool(problems)
    return 1 if failed else 0
