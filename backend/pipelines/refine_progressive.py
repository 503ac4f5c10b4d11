"""TIRE's progressive infilling over a set of rendered frames around the source view.

Frames are grouped into stages by their angle from the source view: with anchors 20, 90, 180 the
first stage holds the frames within 20 degrees, the second those within 90, the last the rest.
Each frame of a stage takes its colours, wherever a finished frame (the source, or a frame of an
earlier stage) saw the same surface, from the nearest such frame through the tracks; the pixels no
finished frame saw (the unseen mask, dilated a little) go to the inpainter together with the
background (so the weight-free inpainter paints from the subject, not from the backdrop), and the
background is put back afterwards. A stage's frames become references for the next. Anchors
[180] alone is the single-stage ablation: every frame is painted from the source alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..models.inpaint import Inpainter
from ..progress import Progress, no_progress
from ..assets.cameras import Camera
from ..track.geometry import Correspondence, sample_image
from ..track.masks import dilate

# correspond(target, references) -> per reference (nearest first) its Correspondence of the target's pixels
Correspond = Callable[[int, Sequence[int]], list[tuple[int, Correspondence]]]


@dataclass
class Refined:
    images: np.ndarray  # (N, H, W, 3) float32 refined frames (the source frame as given)
    unseen: np.ndarray  # (N, H, W) bool: what no finished frame saw when the frame was painted (dilated)
    stage: list[int]  # per frame: its stage (0 = the source)
    report: dict = field(default_factory=dict)


def view_angles(cameras: Sequence[Camera], source: int, centre: np.ndarray | None = None) -> np.ndarray:
    """Degrees between each camera's direction from `centre` (default the origin) and the source's."""
    c = np.zeros(3) if centre is None else np.asarray(centre, np.float64)
    dirs = np.stack([cam.position - c for cam in cameras])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return np.degrees(np.arccos(np.clip(dirs @ dirs[source], -1.0, 1.0)))


def stages(angles: np.ndarray, source: int, anchors: Sequence[float]) -> list[list[int]]:
    """Frames per stage (stage 0: the source alone), each ordered by angle."""
    out: list[list[int]] = [[source]]
    low = -1.0
    for anchor in anchors:
        members = [i for i in np.argsort(angles, kind="stable") if i != source and low < angles[i] <= anchor + 1e-6]
        out.append([int(i) for i in members])
        low = anchor + 1e-6
    return out


def nearest_references(cameras: Sequence[Camera], target: int, finished: Sequence[int], count: int) -> list[int]:
    """The `count` finished frames whose view directions are closest to the target's."""
    angles = view_angles(cameras, target)
    return sorted(finished, key=lambda i: (angles[i], i))[:count]


def progressive_inpaint(images: np.ndarray, masks: np.ndarray, cameras: Sequence[Camera], source: int,
                        anchors: Sequence[float], correspond: Correspond, inpainter: Inpainter, prompt: str = "",
                        dilate_px: int = 2, background: Sequence[float] = (1.0, 1.0, 1.0), references: int = 6,
                        progress: Progress = no_progress) -> Refined:
    """Refine `images` (N, H, W, 3), the asset's renders from `cameras` with coverage `masks`
    (N, H, W), outward from frame `source` (kept exactly)."""
    n = len(images)
    angles = view_angles(cameras, source)
    plan = stages(angles, source, anchors)
    refined = np.array(images, dtype=np.float32, copy=True)
    unseen_all = np.zeros(masks.shape, dtype=bool)
    stage_of = [0] * n
    finished = [source]
    bg = np.asarray(background, dtype=np.float32)
    report: dict = {"anchors": list(anchors), "stages": [], "frames": {}}
    done, total = 0, max(n - 1, 1)
    for k, members in enumerate(plan[1:], start=1):
        refs_of_stage = list(finished)
        label = f"inpainting within {anchors[k - 1]:g} deg"
        for i in members:
            mask = masks[i]
            colour = refined[i].copy()  # prior colours: the asset's own render
            filled = np.zeros_like(mask)
            warped_from: dict[int, int] = {}
            for ref, corr in correspond(i, nearest_references(cameras, i, refs_of_stage, references)):
                take = corr.seen & mask & ~filled
                if take.any():
                    colour[take] = sample_image(refined[ref], corr.coords, masks[ref])[take]
                    filled |= take
                    warped_from[ref] = int(take.sum())
            unseen = dilate(mask & ~filled, dilate_px, within=mask)
            repaint = unseen | ~mask
            known = mask & ~unseen
            if known.any() and unseen.any():
                out = inpainter.inpaint(colour, repaint, prompt)
            else:  # nothing unseen, or nothing known to paint from (the asset's colours stay)
                out = colour
            out = np.where(mask[..., None], out, bg).astype(np.float32)
            out[known] = colour[known]
            refined[i] = out
            unseen_all[i] = unseen
            stage_of[i] = k
            report["frames"][str(i)] = {"angle": round(float(angles[i]), 2), "stage": k,
                                        "unseen_fraction": round(float(unseen.sum() / max(mask.sum(), 1)), 4),
                                        "warped_from": warped_from, "nothing_known": bool(not known.any())}
            done += 1
            progress(done / total, label)
        report["stages"].append({"anchor": anchors[k - 1], "frames": members})
        finished += members
    return Refined(refined, unseen_all, stage_of, report)
