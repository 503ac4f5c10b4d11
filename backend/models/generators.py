"""Orbit-frame generators: one interface over the weight-free projection and the video models.

A generator takes the orbits' G-buffers (horizontal first, then vertical; frame 0 of both is the
same view), the reference image with its camera and G-buffer, and options; it returns RGB frames
(N, H, W, 3) float32 in [0, 1] for each orbit, background black. Two modes serve the reconstruct
and refine pipelines:
  - partial denoise: `init_frames` + `strength` < 1 start from the given frames noised to
    `strength` (1.0 = from pure noise; the given frames are ignored);
  - masked: `masks` (True = regenerate) keep the init frames' pixels outside the mask.
Module-level imports stay torch-free: the HTTP process imports this for names and requirements.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from ..errors import InputError
from ..progress import Progress

if TYPE_CHECKING:
    from ..assets.mesh import Mesh
    from ..render.cameras import Camera
    from ..render.gbuffer import GBuffers

DEFAULT_PROMPT = "This is a 3D model"

# generator name -> (module, class, default model or None)
GENERATORS: dict[str, tuple[str, str, str | None]] = {
    "projection": ("projection", "ProjectionGenerator", None),
    "wan-vace": ("wan_vace", "WanVaceGenerator", "wan2.1-vace-1.3b"),
    "orbitpainter": ("orbitpainter", "OrbitPainterGenerator", "orbitpainter"),
}


@dataclass(frozen=True)
class Orbit:
    name: str  # "horizontal" | "vertical"
    cameras: list["Camera"]
    gbuffers: "GBuffers"

    def __len__(self) -> int:
        return len(self.cameras)


@dataclass(frozen=True)
class Reference:
    image: np.ndarray  # (H, W, 3) float32 in [0, 1], composited on black
    mask: np.ndarray  # (H, W) bool, the subject
    camera: "Camera"  # the camera the image was taken from, at the image's size
    gbuffer: "GBuffers"  # one view of the mesh from `camera` (at the image's size)


@dataclass
class GenerateOptions:
    prompt: str = DEFAULT_PROMPT
    negative_prompt: str = ""
    seed: int = 0
    steps: int | None = None  # None: the generator's default
    guidance: float | None = None
    model: str | None = None  # registry name; None: the generator's default
    device: str = "auto"  # "auto" = cuda when available
    force_cpu: bool = False  # run a large model on the CPU anyway
    init_frames: dict[str, np.ndarray] | None = None  # orbit name -> (N, H, W, 3) start frames
    strength: float = 1.0  # noise level the init frames start from (1 = pure noise)
    masks: dict[str, np.ndarray] | None = None  # orbit name -> (N, H, W) bool, True = regenerate
    extra: dict = field(default_factory=dict)


class Generator(Protocol):
    name: str

    def generate(self, mesh: "Mesh", orbits: Sequence[Orbit], reference: Reference, options: GenerateOptions,
                 progress: Progress) -> dict[str, np.ndarray]:
        """Frames per orbit name: (N, H, W, 3) float32 in [0, 1]. `mesh` is the surface in the
        orbits' (normalized) frame; video models condition on the G-buffers alone."""
        ...


def model_for(name: str, options: GenerateOptions | None = None) -> str | None:
    if name not in GENERATORS:
        raise InputError(f"unknown generator {name!r}; use one of {', '.join(GENERATORS)}")
    return (options.model if options and options.model else None) or GENERATORS[name][2]


def create(name: str, options: GenerateOptions | None = None) -> Generator:
    module, cls, _ = GENERATORS[name] if name in GENERATORS else (None, None, None)
    if module is None:
        raise InputError(f"unknown generator {name!r}; use one of {', '.join(GENERATORS)}")
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)()


def prepare(name: str, options: GenerateOptions, frames: int, size: int) -> None:
    """Everything that can fail before any work: the model's files are installed (and the models it
    needs), the chosen device has the memory, the options are consistent. Raises a clear error."""
    model = model_for(name, options)
    if model is None:
        return
    from .registry import resolve

    folder = resolve(model)
    if name == "orbitpainter":
        from .orbitpainter import require_diffsynth

        require_diffsynth()
    from .memory import check_memory, estimate_need

    check_memory(model, estimate_need(folder, frames, size), pick_device(options.device), options.force_cpu)


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def validate_modes(orbits: Sequence[Orbit], options: GenerateOptions) -> None:
    """Check partial-denoise / masked inputs against the orbits (shapes, ranges)."""
    if not 0.0 < options.strength <= 1.0:
        raise InputError(f"strength must be in (0, 1], got {options.strength}")
    if options.strength < 1.0 and not options.init_frames:
        raise InputError("a strength below 1 needs init frames to start from")
    if options.masks and not options.init_frames:
        raise InputError("masked generation needs init frames (the pixels kept outside the mask)")
    for orbit in orbits:
        n, h, w = orbit.gbuffers.mask.shape
        if options.init_frames is not None:
            frames = options.init_frames.get(orbit.name)
            if frames is None or frames.shape != (n, h, w, 3):
                got = None if frames is None else frames.shape
                raise InputError(f"init frames for the {orbit.name} orbit must be {(n, h, w, 3)}, got {got}")
        if options.masks is not None:
            mask = options.masks.get(orbit.name)
            if mask is None or mask.shape != (n, h, w):
                got = None if mask is None else mask.shape
                raise InputError(f"mask for the {orbit.name} orbit must be {(n, h, w)}, got {got}")


def composite(generated: np.ndarray, init: np.ndarray | None, mask: np.ndarray | None) -> np.ndarray:
    """Masked mode's last step: keep the init frames' pixels outside the mask, exactly."""
    if mask is None or init is None:
        return generated
    m = mask[..., None].astype(np.float32)
    return (generated * m + init * (1 - m)).astype(np.float32)
