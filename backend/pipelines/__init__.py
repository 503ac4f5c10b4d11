"""Pipelines by name: the one place the CLI and the service look jobs up.

Each pipeline module defines:
  NAME: str                      the job type, CLI verb and operator word
  INPUTS: dict[str, str]         input role -> description (the files a job uploads, by role)
  OPTIONAL_INPUTS: dict[str, str]
  Params: a dataclass            options with defaults (the JSON `params` of a job spec)
  add_arguments(parser)          CLI flags; positional inputs are named like the roles
  run(inputs, params, out_dir, progress) -> dict[str, Path]   named result files under out_dir
The CLI and the service both call `run`; nothing else differs between them.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import InputError

# job type -> module name (imported lazily: the service's HTTP process never imports torch)
PIPELINES: dict[str, str] = {
    "render-orbit": "render_orbit",
    "bake": "bake",
    "complete": "complete",
    "texture": "texture",
    "reconstruct": "reconstruct",
    "refine": "refine",
}


def load(name: str) -> ModuleType:
    if name not in PIPELINES:
        raise InputError(f"unknown job type {name!r}; known: {', '.join(sorted(PIPELINES))}")
    return importlib.import_module(f"{__name__}.{PIPELINES[name]}")


def add_views_frame_argument(parser: argparse.ArgumentParser) -> None:
    """--views-frame, the same for every pipeline that takes cameras (backend/render/views_frame.py)."""
    from ..render.views_frame import VIEWS_FRAMES

    parser.add_argument("--views-frame", dest="views_frame", choices=VIEWS_FRAMES,
                        help="frame of the cameras' transform_matrix: gltf (the mesh file's own, Y up for a GLB), "
                             "blender (Blender's world, Z up, as Blender add-ons and NeRF-synthetic sets write it) "
                             "or auto (default: the one whose renders of the mesh match the images' silhouettes, "
                             "or without alpha their colours); every choice is checked before the long work")


def output_paths(out: str | Path, suffix: str | tuple[str, ...], default_name: str) -> tuple[Path, Path]:
    """(main result, folder for side results) by the CLI's --out convention: OUT.<suffix> is the main
    result with the side results in OUT_files/ beside it (never among the user's files); any other
    --out is a folder holding `default_name` and the side results."""
    out = Path(out)
    if out.suffix.lower() in ((suffix,) if isinstance(suffix, str) else suffix):
        return out, out.with_name(out.stem + "_files")
    return out / default_name, out


def parse_params(params_cls: type, values: dict[str, Any] | None, prefix: str = "", base: Any = None) -> Any:
    """Build a Params dataclass from a JSON dict, refusing unknown keys and wrong types. A field whose
    type is itself a dataclass (texture's `bake: BakeParams`) takes a JSON object, parsed the same way
    over the field's own default (refine's `bake` defaults differ from BakeParams'), so keys left out
    keep the job's defaults; errors name nested keys with dots (`bake.method`). `base`: the instance
    whose values stand for the keys left out (default: the class's defaults)."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InputError(f"unknown parameter(s) {', '.join(prefix + k for k in unknown)}; "
                         f"known: {', '.join(prefix + k for k in sorted(fields))}")
    hints = typing.get_type_hints(params_cls)
    for key, value in values.items():
        values[key] = _coerce(prefix + key, value, hints[key], _field_default(fields[key]))
    try:
        return dataclasses.replace(base, **values) if base is not None else params_cls(**values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{prefix[:-1]}: {exc}" if prefix else str(exc)) from None


def _field_default(f: dataclasses.Field) -> Any:  # type: ignore[type-arg]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _coerce(key: str, value: Any, hint: Any, default: Any = None) -> Any:
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if dataclasses.is_dataclass(option) and isinstance(option, type):
            if isinstance(value, option):
                return value
            if isinstance(value, dict):
                return parse_params(option, value, prefix=key + ".",
                                    base=default if isinstance(default, option) else None)
            continue
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is typing.Literal and value in typing.get_args(option):
            return value
        if typing.get_origin(option) in (list, tuple) and isinstance(value, (list, tuple)):
            return type(value)(value) if typing.get_origin(option) is list else tuple(value)
    raise InputError(f"parameter {key!r}: {value!r} is not a valid {getattr(hint, '__name__', hint)}")
