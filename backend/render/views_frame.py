"""Which coordinate frame a view set's cameras are in, and whether they see the mesh at all.

View sets arrive with `transform_matrix` in one of two frames: the mesh file's own (glTF, Y up;
Orbitex and nerfstudio write this for a GLB) or Blender's world (Z up; Blender add-ons,
BlenderNeRF and the NeRF-synthetic data write it), which glTF sees turned by GLTF_FROM_BLENDER.
`resolve_views_frame` renders the mesh through the cameras of each candidate frame at a small
size and scores the agreement with the images: silhouette IoU against the masks / alpha where the
set has them, else photo-consistency (how much better the colours that the views see of one
surface point agree than those of unrelated points). `auto` takes the best candidate; either way,
if the chosen frame does not fit (median IoU or consistency below a threshold, or the mesh outside
most views) it raises InputError with the numbers and the likely fix, before any long work.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from ..assets.mesh import Mesh
from ..errors import InputError
from ..assets.cameras import Camera

log = logging.getLogger("orbitex.views_frame")
VIEWS_FRAMES = ("auto", "gltf", "blender")
ViewsFrame = Literal["auto", "gltf", "blender"]
CANDIDATES = ("gltf", "blender")
# Blender world (Z up) -> glTF (Y up), as Blender's glTF exporter converts: (x, y, z) -> (x, z, -y)
GLTF_FROM_BLENDER = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])

CHECK_SIDE = 128  # the check renders and compares at most this many pixels along an image's longer side
CHECK_VIEWS = 24  # views compared at most (evenly spread over the set)
SURFACE_POINTS = 3000  # surface samples for the in-view test and photo-consistency
MIN_IOU = 0.7  # median silhouette IoU a frame needs (a near-round blob seen in the wrong frame scores 0.83)
# photo-consistency a frame needs (0: no better than chance, 1: exact agreement); wrong meshes and
# frames score 0.06-0.23 on the synthetic sets, right ones 0.23-0.75 (fine print at 128 px lowest), so a
# frame between WEAK_CONSISTENCY and MIN_CONSISTENCY also fits when it scores twice the other frame
MIN_CONSISTENCY = 0.3
WEAK_CONSISTENCY = 0.15
MIN_IN_VIEW = 0.5  # fraction of views that must have most of the mesh inside the image
MIN_DETAIL = 0.02  # colour spread (std, 0-1) within a view below which its image is flat where the mesh is
TIE = 0.03  # fitting IoUs closer than this do not decide (symmetric objects): photo-consistency does


@dataclass(frozen=True)
class CandidateScore:
    frame: str
    in_view: float  # fraction of the checked views with at least half of the mesh inside the image
    iou: float | None = None  # median silhouette IoU (None without masks)
    area_ratio: float | None = None  # median rendered / image silhouette area (a scale mismatch shows here)
    consistency: float | None = None  # photo-consistency (None: not needed, or the images hold no detail to judge by)

    def fits(self, other: "CandidateScore") -> bool:
        """Whether this frame shows the mesh where the images do (`other`: the other candidate)."""
        if self.in_view < MIN_IN_VIEW:
            return False
        if self.iou is not None:
            return self.iou >= MIN_IOU
        if self.consistency is None:  # the images hold nothing to check by: only the in-view test applies
            return True
        c, o = self.consistency, other.consistency or 0.0
        return c >= MIN_CONSISTENCY or (c >= WEAK_CONSISTENCY and c >= 2 * o)

    def as_dict(self) -> dict:
        return {k: (None if v is None else round(float(v), 4)) for k, v in
                (("in_view", self.in_view), ("iou", self.iou), ("area_ratio", self.area_ratio),
                 ("consistency", self.consistency))}


@dataclass(frozen=True)
class FrameChoice:
    frame: str  # the frame used: gltf | blender
    requested: str  # auto | gltf | blender
    decided_by: str  # "silhouette IoU" | "photo-consistency" | "as requested"
    candidates: dict[str, CandidateScore]
    views_checked: int

    def report(self) -> dict:
        return {"views_frame": self.frame, "requested": self.requested, "decided_by": self.decided_by,
                "views_checked": self.views_checked,
                "thresholds": {"iou": MIN_IOU, "consistency": MIN_CONSISTENCY, "weak_consistency": WEAK_CONSISTENCY,
                               "in_view": MIN_IN_VIEW},
                "candidates": {name: score.as_dict() for name, score in self.candidates.items()}}

    def summary(self) -> str:
        scores = ", ".join(f"{name} {_score_text(s)}" for name, s in self.candidates.items())
        return f"views frame {self.frame} ({self.requested}; {scores})"


def _score_text(score: CandidateScore) -> str:
    parts = []
    if score.iou is not None:
        parts.append(f"IoU {score.iou:.2f}")
    if score.consistency is not None:
        parts.append(f"consistency {score.consistency:.2f}")
    parts.append(f"in view {score.in_view:.0%}")
    return " ".join(parts)


def cameras_in_frame(cameras: Sequence[Camera], frame: str) -> list[Camera]:
    """The cameras moved into the mesh file's frame from `frame` (gltf: as they are)."""
    if frame == "gltf":
        return list(cameras)
    if frame != "blender":
        raise InputError(f"unknown views_frame {frame!r}; use one of {', '.join(VIEWS_FRAMES)}")
    return [Camera(GLTF_FROM_BLENDER @ c.c2w, c.fx, c.fy, c.cx, c.cy, c.width, c.height) for c in cameras]


def resolve_views_frame(mesh: Mesh, cameras: Sequence[Camera], images: np.ndarray | None,
                        masks: np.ndarray | None, requested: str = "auto", rasterizer: str = "auto",
                        what: str = "the view set") -> tuple[list[Camera], FrameChoice]:
    """The cameras in the mesh's frame and how that frame was chosen. `images` (N, H, W, 3) and
    `masks` (N, H, W) belong to the cameras; either may be None. Raises InputError when the
    chosen frame does not show the mesh where the images do."""
    if requested not in VIEWS_FRAMES:
        raise InputError(f"unknown views_frame {requested!r}; use one of {', '.join(VIEWS_FRAMES)}")
    cameras = list(cameras)
    pick = np.unique(np.linspace(0, len(cameras) - 1, min(len(cameras), CHECK_VIEWS)).round().astype(int))
    small = _small_cameras([cameras[i] for i in pick])
    size = (small[0].height, small[0].width)
    small_masks = None if masks is None else _resize(np.asarray(masks)[pick].astype(np.float32), size) > 0.5
    small_images = None if images is None else _resize(np.asarray(images)[pick].astype(np.float32), size)
    if small_masks is not None:
        # a mask that shows nothing, or the whole frame (an opaque alpha channel), says nothing about the frame
        cover = small_masks.mean((1, 2))
        informative = (cover > 0) & (cover < 0.99)
        small_masks = small_masks[informative] if informative.any() else None
        mask_views = np.nonzero(informative)[0]
    points, normals = _surface_points(mesh)
    extent = float((mesh.positions.max(0) - mesh.positions.min(0)).max())

    scores: dict[str, CandidateScore] = {}
    renders: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for frame in CANDIDATES:
        cams = cameras_in_frame(small, frame)
        in_view = _in_view(cams, points)
        silhouette, depth = _render(mesh, cams, in_view, rasterizer)
        renders[frame] = (silhouette, depth)
        iou = area = None
        if small_masks is not None:
            shape = silhouette[mask_views]
            inter = (shape & small_masks).sum((1, 2))
            union = (shape | small_masks).sum((1, 2))
            iou = float(np.median(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))
            shown = small_masks.sum((1, 2))
            area = float(np.median(shape.sum((1, 2)) / shown))
        scores[frame] = CandidateScore(frame, float((in_view >= 0.5).mean()), iou, area)

    def with_consistency(frame: str) -> None:
        if small_images is not None and scores[frame].consistency is None:
            silhouette, depth = renders[frame]
            c = _photo_consistency(cameras_in_frame(small, frame), points, normals, small_images, silhouette, depth,
                                   0.03 * extent)
            s = scores[frame]
            scores[frame] = CandidateScore(s.frame, s.in_view, s.iou, s.area_ratio, c)

    ious = [scores[f].iou for f in CANDIDATES]
    tie = small_masks is not None and min(ious) >= MIN_IOU and abs(ious[0] - ious[1]) < TIE  # type: ignore[operator,type-var]
    if small_masks is not None and not tie:
        by = "silhouette IoU"
        key = lambda f: (scores[f].in_view >= MIN_IN_VIEW, scores[f].iou)  # noqa: E731
    else:  # no masks, or a symmetric silhouette that fits both frames equally: the colours decide
        for frame in CANDIDATES:
            with_consistency(frame)
        by = "photo-consistency" if small_masks is None else \
            "photo-consistency (the silhouettes fit both frames equally)"
        key = lambda f: (scores[f].in_view >= MIN_IN_VIEW, scores[f].consistency or 0.0)  # noqa: E731
        if all(scores[f].consistency is None for f in CANDIDATES):
            by = "nothing: the images show no silhouette or detail to check the frame by (gltf, as written)"
    if requested == "auto":
        best = max(CANDIDATES, key=key)  # ties keep the first: gltf, the frame as written
    else:
        best, by = requested, "as requested"
    choice = FrameChoice(best, requested, by, scores, len(pick))
    log.info("%s: %s, by %s", what, choice.summary(), by)
    if not scores[best].fits(scores[_other(best)]):
        raise InputError(_misfit_message(choice, what))
    return cameras_in_frame(cameras, best), choice


def _other(frame: str) -> str:
    return next(f for f in CANDIDATES if f != frame)


def _misfit_message(choice: FrameChoice, what: str) -> str:
    s = choice.candidates[choice.frame]
    other = _other(choice.frame)
    scores = "; ".join(f"{name} frame: {_score_text(c)}" for name, c in choice.candidates.items())
    need = (f"median silhouette IoU >= {MIN_IOU}" if s.iou is not None
            else f"photo-consistency >= {MIN_CONSISTENCY} (or >= {WEAK_CONSISTENCY} and twice the other frame's)") + f" and the mesh inside >= {MIN_IN_VIEW:.0%} of the views"
    head = (f"the cameras of {what} do not see the mesh where its images show it "
            f"({'views_frame ' + choice.frame if choice.requested != 'auto' else 'no frame fits'}; {scores}; "
            f"needed: {need}). ")
    if choice.requested != "auto" and choice.candidates[other].fits(s):
        return head + f"Likely fix: the cameras are in the {other} frame: use --views-frame {other} (or auto)."
    if s.in_view < MIN_IN_VIEW:
        return head + ("Likely fix: the mesh is outside most views: the cameras and the mesh are not in one place "
                       "and scale (check the mesh's units and object transform, and that the view set belongs to "
                       "this mesh).")
    if s.area_ratio is not None and not 0.5 <= s.area_ratio <= 2.0:
        return head + (f"Likely fix: the mesh appears {s.area_ratio:.2f}x the area the images show: a scale "
                       "mismatch (the mesh's units, or it was rescaled or moved after the views were made).")
    return head + ("Likely fix: the silhouettes differ in shape: probably the wrong mesh for these views, or "
                   "cameras in a frame other than glTF (Y up) or Blender (Z up).")


def _small_cameras(cameras: list[Camera]) -> list[Camera]:
    w, h = cameras[0].width, cameras[0].height
    scale = min(1.0, CHECK_SIDE / max(w, h))
    if scale == 1.0:
        return cameras
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return [c.resized(*size) for c in cameras]


def _resize(stack: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if stack.shape[1:3] == size:
        return stack
    return np.stack([cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_AREA) for a in stack])


def _surface_points(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    tm = trimesh.Trimesh(mesh.positions, mesh.faces, process=False)
    if not tm.area > 0:
        raise InputError("the mesh has zero surface area")
    points, face = trimesh.sample.sample_surface(tm, SURFACE_POINTS, seed=0)
    return np.asarray(points), np.asarray(tm.face_normals[face])


def _in_view(cameras: list[Camera], points: np.ndarray) -> np.ndarray:
    """Per camera, the fraction of the surface samples in front of it and inside its image."""
    out = np.zeros(len(cameras))
    for i, cam in enumerate(cameras):
        uv, depth = cam.project(points)
        inside = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
        out[i] = inside.mean()
    return out


def _render(mesh: Mesh, cameras: list[Camera], in_view: np.ndarray, rasterizer: str) -> tuple[np.ndarray, np.ndarray]:
    """Silhouettes (N, h, w) bool and depth of the mesh; views that see none of it are left empty."""
    from .gbuffer import render_gbuffers

    h, w = cameras[0].height, cameras[0].width
    silhouette = np.zeros((len(cameras), h, w), dtype=bool)
    depth = np.zeros((len(cameras), h, w), dtype=np.float32)
    seen = np.nonzero(in_view > 0)[0]
    if len(seen):
        g = render_gbuffers(mesh, [cameras[i] for i in seen], rasterizer)
        silhouette[seen] = g.mask.cpu().numpy()
        depth[seen] = g.depth.cpu().numpy()
    return silhouette, depth


def _photo_consistency(cameras: list[Camera], points: np.ndarray, normals: np.ndarray, images: np.ndarray,
                       silhouette: np.ndarray, depth: np.ndarray, tolerance: float,
                       min_points: int = 50) -> float | None:
    """1 - (spread of the colours the views see of each surface point) / (the same spread with the
    colours of each view shuffled among the points it sees): about 0 for cameras that do not see
    the surface the images show, up to 1 for an exact fit. None when too few points are seen twice,
    or the images are flat where the mesh projects (the median view's colour spread there under
    MIN_DETAIL): nothing to judge the frame by."""
    import cv2

    n = len(cameras)
    colours = np.full((n, len(points), images.shape[-1]), np.nan, dtype=np.float32)
    for i, cam in enumerate(cameras):
        if not silhouette[i].any():
            continue
        inner = cv2.erode(silhouette[i].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # no silhouette pixels
        uv, d = cam.project(points)
        x, y = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        ok = (d > 0) & (x >= 0) & (x < cam.width) & (y >= 0) & (y < cam.height)
        x, y = np.where(ok, x, 0), np.where(ok, y, 0)
        view = cam.position[None] - points
        facing = np.abs((normals * view).sum(1)) > 0.3 * np.linalg.norm(view, axis=1)
        ok &= inner[y, x] & (np.abs(depth[i, y, x] - d) < tolerance) & facing
        colours[i, ok] = images[i, y[ok], x[ok]]
    seen = np.isfinite(colours[..., 0])
    multi = seen.sum(0) >= 2
    if multi.sum() < min_points:  # one view, or views that share no surface: nothing to compare
        return None
    colours, seen = colours[:, multi], seen[:, multi]
    per_view = [float(colours[i, seen[i]].std(0).mean()) for i in range(n) if seen[i].sum() >= 2]
    if not per_view or float(np.median(per_view)) < MIN_DETAIL:
        return None

    def spread(c: np.ndarray) -> float:
        med = np.nanmedian(c, axis=0)
        return float(np.nanmean(np.abs(c - med[None]).mean(-1)))

    rng = np.random.default_rng(0)
    shuffled = colours.copy()
    for i in range(n):
        idx = np.nonzero(seen[i])[0]
        shuffled[i, idx] = colours[i, rng.permutation(idx)]
    chance = spread(shuffled)
    if chance < 1e-3:  # flat colours everywhere: nothing to judge by
        return None
    return float(1.0 - spread(colours) / chance)
