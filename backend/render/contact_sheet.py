"""Contact sheets: labelled rows of thumbnails in one uint8 RGB image (a preview of a render)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

_GAP = 4
_LABEL_WIDTH = 120
_BACKGROUND = 32
_TEXT = (230, 230, 230)


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3), aspect kept, centred on the sheet background."""
    import cv2

    h, w = image.shape[:2]
    scale = size / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    tile = np.full((size, size, 3), _BACKGROUND, dtype=np.uint8)
    y, x = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    tile[y:y + small.shape[0], x:x + small.shape[1]] = small
    return tile


def contact_sheet(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str] | None = None,
                  tile: int = 128, captions: Sequence[str] | None = None) -> np.ndarray:
    """Rows of uint8 (H, W, 3) images -> one sheet with a label left of each row and optional
    captions (one per column) above the first row."""
    import cv2

    if not rows or not any(len(r) for r in rows):
        raise ValueError("a contact sheet needs at least one image")
    columns = max(len(r) for r in rows)
    label_w = _LABEL_WIDTH if labels else 0
    caption_h = 18 if captions else 0
    width = label_w + columns * (tile + _GAP) + _GAP
    height = caption_h + len(rows) * (tile + _GAP) + _GAP
    sheet = np.full((height, width, 3), _BACKGROUND, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for c, text in enumerate(captions or []):
        x = label_w + _GAP + c * (tile + _GAP)
        cv2.putText(sheet, str(text), (x + 2, caption_h - 5), font, 0.4, _TEXT, 1, cv2.LINE_AA)
    for r, images in enumerate(rows):
        y = caption_h + _GAP + r * (tile + _GAP)
        if labels:
            for line, text in enumerate(str(labels[r]).split("\n")):
                cv2.putText(sheet, text, (6, y + tile // 2 + 16 * line), font, 0.45, _TEXT, 1, cv2.LINE_AA)
        for c, image in enumerate(images):
            x = label_w + _GAP + c * (tile + _GAP)
            sheet[y:y + tile, x:x + tile] = thumbnail(image, tile)
    return sheet
