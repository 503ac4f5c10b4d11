"""Unseen masks: dilation inside the subject, and the measures the benchmark compares them by."""
from __future__ import annotations

import numpy as np


def dilate(mask: np.ndarray, pixels: int, within: np.ndarray | None = None) -> np.ndarray:
    """`mask` grown by `pixels` (a disc), kept inside `within` when given."""
    if pixels <= 0:
        return mask.copy() if within is None else mask & within
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    grown = cv2.dilate(mask.astype(np.uint8), kernel) > 0
    return grown if within is None else grown & within


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def components(mask: np.ndarray) -> int:
    """Number of 8-connected components (a coherent mask has few; a grainy one many)."""
    import cv2

    count, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return int(count) - 1
