"""Orbit-frame generators by name: the weight-free projection and the video models.

The values they take and give are in types.py. Each generator class checks its own needs in
`prepare` (frame counts, weights, packages, memory), so nothing here knows one generator from
another. Module-level imports stay torch-free: the HTTP process imports this for names.
"""
from __future__ import annotations

import importlib

from ..errors import InputError
from .types import GenerateOptions, Generator

# generator name -> (module, class, default model or None)
GENERATORS: dict[str, tuple[str, str, str | None]] = {
    "projection": ("projection", "ProjectionGenerator", None),
    "wan-vace": ("wan_vace", "WanVaceGenerator", "wan2.1-vace-1.3b"),
    "orbitpainter": ("orbitpainter", "OrbitPainterGenerator", "orbitpainter"),
}


def _entry(name: str) -> tuple[str, str, str | None]:
    if name not in GENERATORS:
        raise InputError(f"unknown generator {name!r}; use one of {', '.join(GENERATORS)}")
    return GENERATORS[name]


def model_for(name: str, options: GenerateOptions | None = None) -> str | None:
    """The registry model a generator runs: the options' choice, else the generator's default."""
    return (options.model if options and options.model else None) or _entry(name)[2]


def create(name: str) -> Generator:
    module, cls, _ = _entry(name)
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)()


def prepare(name: str, options: GenerateOptions, frames: int, size: int) -> Generator:
    """The generator, after everything that can fail before any work has been checked (its model's
    files and the models it needs, packages, the device's memory, frame count and size)."""
    generator = create(name)
    generator.prepare(options, frames, size)
    return generator


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_model_memory(model: str, frames: int, size: int, options: GenerateOptions, extra: tuple[str, ...] = ()) -> None:
    """Refuse before loading when `model` (with the models in `extra`) will not fit the device."""
    from .memory import check_memory, estimate_need
    from .registry import resolve

    need = sum(estimate_need(resolve(m), frames, size) for m in (model, *extra))
    check_memory(model, need, pick_device(options.device), options.force_cpu)
