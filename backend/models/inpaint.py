"""Inpainters: repaint the masked pixels of an image, keep the rest exactly.

The refine pipeline warps the colours of already-finished frames into a target frame first
(backend/track), so an inpainter only sees what no finished frame saw. Two implementations:
  opencv      weight-free: OpenCV shift-map inpainting (known patches copied into the hole), Telea
              diffusion for what it leaves
  sd-inpaint  Stable Diffusion inpainting with a subject LoRA (backend/models/sd_inpaint.py,
              imported only when asked for; it needs weights and says which when they are absent)
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from ..errors import InputError, OrbitexError

INPAINTERS = ("opencv", "sd-inpaint")


class Inpainter(Protocol):
    name: str

    def inpaint(self, image: np.ndarray, mask: np.ndarray, prompt: str,
                progress: Callable[[float], None] | None = None) -> np.ndarray:
        """`image` (H, W, 3) float32 in [0, 1] with the prior colours already warped in, `mask`
        (H, W) bool, True = repaint; returns (H, W, 3) float32 with the unmasked pixels exactly as given."""
        ...


def check_inputs(image: np.ndarray, mask: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"inpainting needs an (H, W, 3) image, got {image.shape}")
    if mask.shape != image.shape[:2]:
        raise InputError(f"the inpainting mask is {mask.shape}, the image {image.shape[:2]}")


class OpenCVInpainter:
    """Weight-free inpainting on 8-bit colours; the unmasked pixels are put back as float32 exactly.
    `shiftmap` (default, opencv-contrib xphoto): every repainted pixel copies a known pixel at an
    optimized offset, so a pattern continues into the hole; pixels it leaves empty (a label it
    could not place) and the `telea` method use OpenCV's Telea diffusion, which smears colours
    inwards. A mask covering the whole image leaves nothing to paint from: those pixels stay."""

    name = "opencv"
    METHODS = ("shiftmap", "telea")

    def __init__(self, method: str = "shiftmap", radius: int = 5) -> None:
        if method not in self.METHODS:
            raise InputError(f"unknown OpenCV inpainting method {method!r}; use one of {', '.join(self.METHODS)}")
        if radius < 1:
            raise InputError("the inpainting radius must be at least 1 pixel")
        self.method, self.radius = method, radius

    def inpaint(self, image: np.ndarray, mask: np.ndarray, prompt: str = "",
                progress: Callable[[float], None] | None = None) -> np.ndarray:
        import cv2

        check_inputs(image, mask)
        out = np.array(image, dtype=np.float32, copy=True)
        if mask.any() and not mask.all():
            src = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
            todo = mask.copy()
            if self.method == "shiftmap":
                painted = np.zeros_like(src)
                cv2.xphoto.inpaint(src, (~mask).astype(np.uint8), painted, cv2.xphoto.INPAINT_SHIFTMAP)
                placed = mask & (painted.max(-1) > 0)  # shift-map leaves pixels it could not place black
                out[placed] = painted[placed].astype(np.float32) / 255.0
                src[placed] = painted[placed]
                todo = mask & ~placed
            if todo.any():
                painted = cv2.inpaint(src, todo.astype(np.uint8), self.radius, cv2.INPAINT_TELEA)
                out[todo] = painted[todo].astype(np.float32) / 255.0
        if progress is not None:
            progress(1.0)
        return out


def load_inpainter(name: str, **options: Any) -> Inpainter:
    """The inpainter `name` (see INPAINTERS). sd-inpaint options: model, strength, lora, seed
    (backend.models.sd_inpaint.SDInpainter); its weights are checked here, before any work."""
    if name == "opencv":
        return OpenCVInpainter(**options)
    if name == "sd-inpaint":
        module = _sd_module()
        module.require_weights(options.get("model", "sd-inpaint"))
        return module.SDInpainter(**options)
    raise InputError(f"unknown inpainter {name!r}; use one of {', '.join(INPAINTERS)}")


def require_inpainter(name: str, model: str = "sd-inpaint") -> None:
    """Fail before any work when `name` cannot run here (unknown, or its weights missing)."""
    if name == "opencv":
        return
    if name == "sd-inpaint":
        _sd_module().require_weights(model)
        return
    raise InputError(f"unknown inpainter {name!r}; use one of {', '.join(INPAINTERS)}")


def _sd_module():  # type: ignore[no-untyped-def]
    import importlib

    try:
        return importlib.import_module(f"{__package__}.sd_inpaint")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"{__package__}.sd_inpaint",):
            raise OrbitexError(f"the sd-inpaint inpainter cannot load: {exc} (pip install -r backend/requirements.txt)") from None
        raise OrbitexError("the sd-inpaint inpainter is not part of this backend build (backend/models/sd_inpaint.py "
                           "is missing); use --inpainter opencv") from None
