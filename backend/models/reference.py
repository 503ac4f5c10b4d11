"""The reference image of a texture job: read, check, cut out the subject, composite on black.

OrbitPainter was trained with the reference on black; every generator gets it that way. Images
that cannot be a reference (unreadable, tiny, enormous, a single flat colour, fully transparent)
are refused with an InputError naming the file; the file itself is never modified.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .foreground import cut_foreground

MIN_SIDE = 16
MAX_SIDE = 8192  # larger files are refused (downscale them first)
WORK_SIDE = 2048  # larger images are reduced to this for the job
FLAT_STD = 1.0 / 255  # below this standard deviation the image holds no picture


@dataclass(frozen=True)
class ReferenceImage:
    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1], subject on black
    mask: np.ndarray  # (H, W) bool
    had_alpha: bool


def load_reference(path: str | Path) -> ReferenceImage:
    from ..assets.images import read_image

    path = Path(path)
    data = read_image(path)  # InputError naming the file when missing, corrupt or over 64 Mpx
    h, w = data.shape[:2]
    if max(w, h) > MAX_SIDE:
        raise InputError(f"{path.name}: the reference image is {w}x{h}; the largest accepted is "
                         f"{MAX_SIDE} px per side: downscale it")
    if min(w, h) < MIN_SIDE:
        raise InputError(f"{path.name}: the reference image is {w}x{h}; it needs at least {MIN_SIDE} px per side")
    rgb = data[..., :3]
    alpha = data[..., 3] if data.shape[2] == 4 else None
    if alpha is not None and alpha.min() > 0.999:
        alpha = None  # an opaque alpha channel says nothing about the subject
    if alpha is not None and alpha.max() < 0.5:
        raise InputError(f"{path.name}: the reference image is fully transparent")
    subject = rgb if alpha is None else rgb[alpha > 0.5]
    if float(subject.reshape(-1, 3).std(0).max()) < FLAT_STD:
        raise InputError(f"{path.name}: the reference image is a single flat colour (no picture to project); "
                         "give an image of the textured object")
    rgb, alpha = _reduce(rgb, alpha)
    used_alpha = alpha is not None
    if alpha is None:
        mask = cut_foreground(rgb, path.name)
        alpha = mask.astype(np.float32)
    else:
        mask = alpha > 0.5
    return ReferenceImage((rgb * alpha[..., None]).astype(np.float32), mask, used_alpha)


def _reduce(rgb: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    h, w = rgb.shape[:2]
    if max(h, w) <= WORK_SIDE:
        return rgb, alpha
    import cv2

    scale = WORK_SIDE / max(h, w)
    size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb, None if alpha is None else cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)


def fit_to_square(ref: ReferenceImage, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference resized into a `size` x `size` canvas (aspect kept, centred, black border),
    as the video models take it."""
    import cv2

    h, w = ref.mask.shape
    scale = size / max(h, w)
    nw, nh = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
    rgb = cv2.resize(ref.rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    mask = cv2.resize(ref.mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) > 0
    canvas, cmask = np.zeros((size, size, 3), np.float32), np.zeros((size, size), bool)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top:top + nh, left:left + nw], cmask[top:top + nh, left:left + nw] = rgb, mask
    return canvas, cmask
