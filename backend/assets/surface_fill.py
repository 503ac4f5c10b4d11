"""Colour for surface no view saw: symmetry transfer, then exemplar synthesis, then (caller) BFS.

The surface is laid out in a radial map around the mesh's centre of area: column = azimuth
around an axis (the mesh's rotation axis, else the principal axis nearest the cameras' up),
row = elevation from the centre; each pixel holds the outermost surface in its direction, so
for the star-shaped bodies this is for (vases, cans, bottles, heads, vehicles) the map is one
seamless image of the whole outside, front and back. In it a mirror plane of the mesh is a
column or row flip and a rotation about the axis is a column shift, so symmetry transfer and
patch-offset synthesis (copy_synthesis.py) are copy maps of one image. Samples that are not on the
outermost layer (insides, folds) or whose pixel nothing could fill are left to the caller's
BFS; the report gives each fraction.

Colours are read from the samples' final colours, so a transferred colour carries the view
alignment and seam levelling its source had.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .mesh_symmetry import Symmetry
from .copy_synthesis import CopyMap, dominant_shifts, synthesize

MAX_HEIGHT = 512  # rows of the radial map (columns: twice as many)
OUTER_TOLERANCE = 0.015  # a sample is on the outer layer within this fraction of the extent
ROTATION_SHIFTS = 6
SYNTHESIS_SHIFTS = 6
SYNTHESIS_PRIOR = 0.01  # extra unary of an offset copy over a symmetric one (squared colour units)

SEEN, SYMMETRY, SYNTHESIS, LEFT = 0, 1, 2, 3


@dataclass(frozen=True)
class RadialMap:
    centre: np.ndarray
    axis: np.ndarray  # azimuth is measured around it
    b1: np.ndarray
    b2: np.ndarray
    height: int
    width: int

    def coords(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Continuous pixel coordinates (x across, y down; pixel centres at +0.5) and distance
        from the centre."""
        v = points - self.centre
        h = v @ self.axis
        p1, p2 = v @ self.b1, v @ self.b2
        rho = np.hypot(p1, p2)
        theta = np.mod(np.arctan2(p2, p1), 2 * np.pi)
        phi = np.arctan2(h, rho)
        x = theta / (2 * np.pi) * self.width
        y = (0.5 - phi / np.pi) * self.height
        return x, y, np.sqrt(rho**2 + h**2)

    def mirror(self, normal: np.ndarray) -> CopyMap | None:
        """The copy map of the mirror plane through the centre with this normal, when the plane
        contains the axis (a column flip) or is perpendicular to it (a row flip)."""
        along = float(abs(normal @ self.axis))
        if along > 0.95:
            return CopyMap("mirror_y", self.height / 2, symmetry=True)
        if along < 0.05:
            m = np.cross(self.axis, normal)
            theta = np.mod(np.arctan2(m @ self.b2, m @ self.b1), 2 * np.pi)
            return CopyMap("mirror_x", theta / (2 * np.pi) * self.width, symmetry=True)
        return None


def radial_map(symmetry: Symmetry, samples: int, up: np.ndarray | None = None,
               max_height: int = MAX_HEIGHT) -> RadialMap:
    has_up = up is not None and np.linalg.norm(up) > 1e-6
    if symmetry.rotation is not None:
        axis = symmetry.rotation.direction
    elif symmetry.planes:  # mirror planes are column or row flips only around a principal axis
        axis = symmetry.axes[int(np.argmax(np.abs(symmetry.axes @ (up / np.linalg.norm(up)))))] if has_up \
            else symmetry.axes[0]
    else:  # the cameras' up: the poles, where the map is least even, go where views rarely look
        axis = up if has_up else symmetry.axes[0]
    if has_up and float(axis @ up) < 0:
        axis = -axis
    axis = axis / np.linalg.norm(axis)
    helper = np.eye(3)[int(np.argmin(np.abs(axis)))]
    b1 = np.cross(axis, helper)
    b1 /= np.linalg.norm(b1)
    b2 = np.cross(axis, b1)
    # about two samples per pixel of the map's (2H x H) turn
    height = int(np.clip(np.sqrt(samples / 4.0), 16, max_height))
    return RadialMap(symmetry.centre, axis, b1, b2, height, 2 * height)


def fill_unseen(points: np.ndarray, normals: np.ndarray, colour: np.ndarray, seen: np.ndarray,
                symmetry: Symmetry, up: np.ndarray | None = None,
                max_height: int = MAX_HEIGHT) -> tuple[np.ndarray, np.ndarray, dict]:
    """Colours (N, C) where unseen samples on the outer layer are transferred or synthesized,
    and the kind of every sample (SEEN, SYMMETRY, SYNTHESIS, LEFT: for the caller's BFS)."""
    start = time.perf_counter()
    points = np.asarray(points, dtype=np.float64)
    seen = np.asarray(seen, dtype=bool)
    kind = np.where(seen, SEEN, LEFT).astype(np.int8)
    out = np.array(colour, dtype=np.float32, copy=True)
    report: dict = {"symmetry": symmetry.as_dict()}
    if seen.all() or not seen.any():
        report.update(_fractions(kind), seconds=round(time.perf_counter() - start, 3))
        return out, kind, report
    rmap = radial_map(symmetry, len(points), up, max_height)
    h, w = rmap.height, rmap.width
    x, y, dist = rmap.coords(points)
    ix = np.clip(x.astype(np.int64), 0, w - 1)
    iy = np.clip(y.astype(np.int64), 0, h - 1)
    pix = iy * w + ix
    extent = float(np.ptp(points, axis=0).max())
    outermost = np.zeros(h * w)
    np.maximum.at(outermost, pix, dist)
    to_out = (points - rmap.centre) / np.maximum(dist, 1e-12)[:, None]
    outer = (dist >= outermost[pix] - OUTER_TOLERANCE * extent) & ((normals * to_out).sum(1) > 0.0)

    # the known image: mean seen colour per pixel of the outer layer
    s = outer & seen
    count = np.bincount(pix[s], minlength=h * w).astype(np.float64)
    image = np.stack([np.bincount(pix[s], out[s, c], minlength=h * w) for c in range(out.shape[1])], 1)
    image = (image / np.maximum(count, 1)[:, None]).reshape(h, w, -1).astype(np.float32)
    known = (count > 0).reshape(h, w)
    need = np.zeros(h * w, dtype=bool)
    need[pix[outer & ~seen]] = True
    need = need.reshape(h, w) & ~known

    maps: list[CopyMap] = []
    for plane in symmetry.planes:
        m = rmap.mirror(plane.normal)
        if m is not None:
            maps.append(m)
    small = _coarse(image, known, 128)
    ratio = w / small[0].shape[1]
    if symmetry.rotation is not None:
        for dx, _, mse in dominant_shifts(*small, ROTATION_SHIFTS, horizontal_only=True):
            maps.append(CopyMap("shift", dx * ratio, 0.0, symmetry=True, prior=mse))
    for dx, dy, mse in dominant_shifts(*small, SYNTHESIS_SHIFTS):
        maps.append(CopyMap("shift", dx * ratio, dy * ratio, symmetry=False, prior=mse + SYNTHESIS_PRIOR))
    filled_img, filled, label = synthesize(image, known, need | known, maps)

    # unseen outer samples read the filled map (bilinear over filled pixels only)
    todo = np.nonzero(outer & ~seen)[0]
    num, den = _bilinear(filled_img * filled[..., None], filled.astype(np.float32), x[todo], y[todo])
    ok = den > 0.25
    out[todo[ok]] = num[ok] / den[ok, None]
    sym = np.array([m.symmetry for m in maps] + [False], dtype=bool)
    lab = label.reshape(-1)[pix[todo[ok]]]
    kind[todo[ok]] = np.where(sym[lab], SYMMETRY, SYNTHESIS)  # -1 (a known pixel's label) -> SYNTHESIS
    report.update(_fractions(kind))
    report.update({"map": [h, w], "axis": np.round(rmap.axis, 4).tolist(),
                   "copy_maps": [{"kind": m.kind, "symmetry": m.symmetry, "prior": round(m.prior, 5)} for m in maps],
                   "seconds": round(time.perf_counter() - start, 3)})
    return out, kind, report


def _bilinear(image: np.ndarray, weight: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear samples of image (H, W, C) and weight (H, W) at continuous pixel coordinates
    (columns wrap, rows clamp)."""
    h, w = weight.shape
    fx, fy = x - 0.5, np.clip(y - 0.5, 0, h - 1)
    x0, y0 = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    ax, ay = (fx - x0)[:, None], (fy - y0)[:, None]
    x0, x1 = x0 % w, (x0 + 1) % w
    y1 = np.minimum(y0 + 1, h - 1)
    num = ((image[y0, x0] * (1 - ax) + image[y0, x1] * ax) * (1 - ay)
           + (image[y1, x0] * (1 - ax) + image[y1, x1] * ax) * ay)
    ax, ay = ax[:, 0], ay[:, 0]
    den = ((weight[y0, x0] * (1 - ax) + weight[y0, x1] * ax) * (1 - ay)
           + (weight[y1, x0] * (1 - ax) + weight[y1, x1] * ax) * ay)
    return num, den


def _coarse(image: np.ndarray, known: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The known image at most `height` rows high (area averages of known pixels)."""
    import cv2

    h, w = known.shape
    if h <= height:
        return image, known
    size = (2 * height * w // (2 * h), height)
    weight = cv2.resize(known.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    small = cv2.resize(image * known[..., None], size, interpolation=cv2.INTER_AREA)
    return (small / np.maximum(weight, 1e-6)[..., None]).astype(np.float32), weight > 0.5


def _fractions(kind: np.ndarray) -> dict:
    n = max(len(kind), 1)
    return {"symmetry_fraction": float((kind == SYMMETRY).sum() / n),
            "synthesis_fraction": float((kind == SYNTHESIS).sum() / n),
            "bfs_fraction": float((kind == LEFT).sum() / n)}
