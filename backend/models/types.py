"""The values every orbit-frame generator takes and gives (torch-free: the HTTP process imports it).

A generator takes the orbits' G-buffers (horizontal first, then vertical; frame 0 of both is the
same view), the reference image with its camera and G-buffer, and options; it returns RGB frames
(N, H, W, 3) float32 in [0, 1] for each orbit, background black. Two modes serve the reconstruct
and refine pipelines:
  - partial denoise: `init_frames` + `strength` < 1 start from the given frames noised to
    `strength` (1.0 = from pure noise; the given frames are ignored);
  - masked: `masks` (True = regenerate) keep the init frames' pixels outside the mask.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from ..errors import InputError
from ..progress import Progress

if TYPE_CHECKING:
    from ..assets.mesh import Mesh
    from ..assets.cameras import Camera
    from ..render.gbuffer import GBuffers

DEFAULT_PROMPT = "This is a 3D model"


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

    def prepare(self, options: GenerateOptions, frames: int, size: int) -> None:
        """Everything that can fail before any work (frame count, weights, packages, memory):
        raises a clear error."""
        ...

    def generate(self, mesh: "Mesh", orbits: Sequence[Orbit], reference: Reference, options: GenerateOptions,
                 progress: Progress) -> dict[str, np.ndarray]:
        """Frames per orbit name: (N, H, W, 3) float32 in [0, 1]. `mesh` is the surface in the
        orbits' (normalized) frame; video models condition on the G-buffers alone."""
        ...


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
