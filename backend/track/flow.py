"""Dense optical-flow tracking along an orbit (or a video) back to the source frame.

For views without geometry (a 4D capture, a view set): OpenCV's DIS flow between neighbouring
frames, both directions; a target pixel is followed frame by frame towards the source along the
shorter way round the orbit, and lost where a step fails the forward-backward check, leaves the
image or lands off the subject. What reaches the source was seen by it; the rest is unseen.
"""
from __future__ import annotations

import numpy as np

from .geometry import Correspondence, sample_image


def _grey(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 flow from RGB image `a` to `b` (DIS, medium preset)."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_grey(a), _grey(b), None)


def chain_paths(count: int, source: int, cyclic: bool) -> list[list[int]]:
    """Per frame, the frames from it to `source` (both ends included): along a cyclic orbit the
    shorter way round, along a sequence straight towards the source."""
    paths = []
    for i in range(count):
        if cyclic:
            up = (i - source) % count
            step = -1 if up <= count - up else 1
        else:
            step = -1 if i > source else 1
        path = [i]
        while path[-1] != source:
            path.append((path[-1] + step) % count)
        paths.append(path)
    return paths


class FlowTracker:
    """Chained DIS flow over a sequence of frames (T, H, W, 3) with coverage masks (T, H, W); the
    flow of each neighbouring pair is computed once, on first use. A step fails the
    forward-backward check, leaves the image, lands off the subject, or joins colours that differ
    by more than `colour_threshold` (max over channels, on slightly blurred frames): flow pushes
    newly uncovered surface onto whatever is nearby, whose colour differs."""

    def __init__(self, frames: np.ndarray, masks: np.ndarray, fb_threshold: float = 2.0,
                 colour_threshold: float = 0.1) -> None:
        import cv2

        self.frames, self.masks = frames, masks
        self.fb_threshold, self.colour_threshold = fb_threshold, colour_threshold
        self.smooth = [cv2.GaussianBlur(np.asarray(f, np.float32), (0, 0), 1.5) for f in frames]
        self._flows: dict[tuple[int, int], np.ndarray] = {}

    def flow(self, i: int, j: int) -> np.ndarray:
        if (i, j) not in self._flows:
            self._flows[(i, j)] = dis_flow(self.frames[i], self.frames[j])
        return self._flows[(i, j)]

    def follow(self, path: list[int]) -> Correspondence:
        """Every covered pixel of frame path[0] followed frame by frame to path[-1]."""
        h, w = self.masks.shape[1:]
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        coords, alive = np.stack([xs, ys], -1), self.masks[path[0]].copy()
        for a, b in zip(path[:-1], path[1:]):
            step = sample_image(self.flow(a, b), coords)
            landed = coords + step
            error = np.linalg.norm(step + sample_image(self.flow(b, a), landed), axis=-1)
            col, row = np.floor(landed[..., 0] + 0.5).astype(np.int64), np.floor(landed[..., 1] + 0.5).astype(np.int64)
            inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
            on_subject = np.zeros_like(alive)
            on_subject[inside] = self.masks[b][row[inside], col[inside]]
            same = np.abs(sample_image(self.smooth[a], coords) - sample_image(self.smooth[b], landed)).max(-1)
            alive &= inside & on_subject & (same <= self.colour_threshold)
            alive &= error <= self.fb_threshold + 0.05 * np.linalg.norm(step, axis=-1)
            coords = landed
        return Correspondence(coords.astype(np.float32), alive)


def flow_track(frames: np.ndarray, masks: np.ndarray, source: int, cyclic: bool = True,
               **options: float) -> list[Correspondence]:
    """Backward tracks of every frame to `source` (see FlowTracker): per frame the coordinates in
    the source and whether the chain reached it (seen)."""
    tracker = FlowTracker(frames, masks, **options)
    return [tracker.follow(path) for path in chain_paths(len(frames), source, cyclic)]
