"""Orbit video models for the reconstruct (IM-3D) pipeline: one image in, an orbit video out, and
video-to-video refinement of renders (partial noise, then denoise).

The narrow interface reconstruct needs; the model registry (registry.py) finds the weights.
Frames are (N, H, W, 3) float32 in [0, 1], the subject on a white background; frame i is the view
from cameras[i] of a horizontal orbit whose frame 0 is the input image's view.
Module-level imports stay torch-free (the HTTP process imports pipeline modules).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from ..errors import InputError
from ..progress import Progress

if TYPE_CHECKING:
    from ..assets.cameras import Camera

DEFAULT_ORBIT_MODEL = "wan2.1-i2v-14b-480p"
ORBIT_PROMPT = ("a 3D render of the object on a plain white background, the camera orbits 360 degrees "
                "around it at a constant distance, turntable, consistent lighting")
ORBIT_NEGATIVE = "blurry, distorted, cut off, text, watermark, busy background, shadows on the ground"
# registry model kind -> (module, class) of the adapter that runs it
ADAPTERS: dict[str, tuple[str, str]] = {"diffusers-wan-i2v": ("wan_i2v", "WanI2VOrbitModel")}


@dataclass
class VideoOptions:
    prompt: str = ORBIT_PROMPT
    negative_prompt: str = ORBIT_NEGATIVE
    steps: int = 30
    guidance: float = 5.0
    seed: int = 0
    size: int = 480  # the square size the model generates at (frames are resized to the cameras')


class OrbitVideoModel(Protocol):
    name: str

    def frame_count(self, view_count: int) -> int:
        """The number of frames the model can make that is closest to (and at least) `view_count`."""
        ...

    def generate(self, image: np.ndarray, cameras: Sequence["Camera"], options: VideoOptions,
                 progress: Progress) -> np.ndarray:
        """The orbit video of the subject in `image` (H, W, 3), one frame per camera."""
        ...

    def refine(self, frames: np.ndarray, image: np.ndarray, cameras: Sequence["Camera"], strength: float,
               options: VideoOptions, progress: Progress) -> np.ndarray:
        """`frames` noised to `strength` (0 = unchanged, 1 = pure noise) and denoised again,
        conditioned on `image`."""
        ...


def load_orbit_model(name: str = DEFAULT_ORBIT_MODEL, device: str = "auto", force_cpu: bool = False,
                     frames: int = 81, size: int = 480) -> OrbitVideoModel:
    """Load an installed orbit video model by registry name. MissingWeightsError names the model
    and its install command when the weights are absent; a model too large for the device is
    refused before loading."""
    import importlib

    from .registry import get_spec, resolve

    spec = get_spec(name)
    if spec.kind not in ADAPTERS:
        raise InputError(f"model {name!r} ({spec.kind}) is not an image-to-video model; "
                         f"use one of: {', '.join(n for n, s in _registry_models().items() if s in ADAPTERS)}")
    folder = resolve(name)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    from .memory import check_memory, estimate_need

    check_memory(name, estimate_need(folder, frames, size), device, force_cpu)
    module, cls = ADAPTERS[spec.kind]
    adapter = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
    return adapter(name, folder, device)


def _registry_models() -> dict[str, str]:
    from .registry import MODELS

    return {name: spec.kind for name, spec in MODELS.items()}
