"""The subject of a reference image: its alpha when it has one, else a weight-free GrabCut cut.

GrabCut starts from a border seed: a frame of pixels along the image border is certain
background, everything else "probably foreground"; the colour models (GMMs) then separate the
subject. The largest connected component is kept and holes are filled, so a stray background blob
or a hole in a patterned object does not survive.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

BORDER_FRACTION = 0.03  # width of the certain-background frame, as a fraction of the shorter side
GRABCUT_ITERATIONS = 5
MAX_GRABCUT_SIDE = 512  # GrabCut runs on a copy this large at most; the mask is scaled back


def cut_foreground(rgb: np.ndarray, name: str = "reference image") -> np.ndarray:
    """Foreground mask (H, W) bool of an (H, W, 3) float image in [0, 1] with no alpha."""
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, MAX_GRABCUT_SIDE / max(h, w))
    small = cv2.resize(rgb, (max(int(w * scale), 1), max(int(h * scale), 1)), interpolation=cv2.INTER_AREA) \
        if scale < 1 else rgb
    img = np.ascontiguousarray((np.clip(small, 0, 1) * 255).astype(np.uint8)[..., ::-1])  # OpenCV wants BGR
    sh, sw = img.shape[:2]
    border = max(2, int(round(BORDER_FRACTION * min(sh, sw))))
    mask = np.full((sh, sw), cv2.GC_PR_FGD, dtype=np.uint8)
    mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = (cv2.GC_BGD,) * 4
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(img, mask, None, bgd, fgd, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:
        raise InputError(f"{name}: cannot separate the subject from the background ({exc.msg.strip()}); "
                         "give an image with an alpha channel") from None
    fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    fg = _largest_component_filled(fg)
    if scale < 1:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_NEAREST)
    fraction = float(fg.mean())
    if fraction < 0.005 or fraction > 0.98:
        raise InputError(f"{name}: no subject could be separated from the background "
                         f"({fraction:.1%} of the image came out as foreground); give an image with an alpha "
                         "channel or the subject on a plain background")
    return fg.astype(bool)


def _largest_component_filled(fg: np.ndarray) -> np.ndarray:
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if count <= 1:
        return fg
    keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    fg = (labels == keep).astype(np.uint8)
    # fill holes: background pixels not connected to the image border become foreground
    inv = (1 - fg).astype(np.uint8)
    count, labels = cv2.connectedComponents(inv, connectivity=4)
    border_labels = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
    holes = (inv == 1) & ~np.isin(labels, list(border_labels))
    fg[holes] = 1
    return fg
