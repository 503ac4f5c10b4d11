"""Synthetic assets for the fill of unseen surface, textured all round (exact ground truth).

- "label_can": a can (bench.synthetic.can_mesh) whose side carries a label repeating six times
  around (a rotation axis; the texture repeats every 60 degrees),
- "head": a head-like shape (ellipsoid skull, nose, ears, chin) mirror-symmetric in x, with a
  mirror-symmetric face, hair and headband,
- "lumpy": a lumpy shape with no symmetry (incommensurate waves, bumps in general positions)
  and a plaid with a few colour blotches.

Each comes with the views that see part of it (`seen_cameras`) and held-out views of what they
miss (`back_cameras`).
"""
from __future__ import annotations

import math

import numpy as np

from backend.assets.mesh import Mesh
from backend.assets.cameras import ORBIT_RADIUS, ORBIT_VFOV_DEG, Camera, look_at

from bench.synthetic import can_mesh, combine, patch, plaid_texture

NAMES = ("label_can", "head", "lumpy")


def _sphere_patch(radius_fn, n: int) -> Mesh:  # type: ignore[no-untyped-def]
    """A closed sphere-like chart: s around (front, theta = 0, at s = 0.5), t from top to bottom."""
    def fn(s, t):
        theta, phi = 2 * math.pi * s - math.pi, math.pi * t
        r = radius_fn(theta, phi)
        return np.stack([r[0] * np.sin(phi) * np.sin(theta), r[1] * np.cos(phi), r[2] * np.sin(phi) * np.cos(theta)], 1)

    pos, faces, uv = patch(fn, n, n // 2, (0.0, 1.0, 1.0, 0.0))
    return combine([(pos, faces, uv)], "sphere")


def head_mesh(n: int = 160) -> Mesh:
    def radius(theta, phi):
        def bump(t0, p0, width):
            # angular distance on the sphere between (theta, phi) and (t0, p0)
            cos_d = np.sin(phi) * np.sin(p0) * np.cos(theta - t0) + np.cos(phi) * np.cos(p0)
            return np.exp(-(1 - cos_d) / width**2)
        base = 1.0 + 0.10 * bump(0.0, 1.75, 0.18) + 0.06 * bump(0.0, 2.45, 0.3)  # nose, chin
        base = base + 0.10 * bump(math.pi / 2, 1.6, 0.16) + 0.10 * bump(-math.pi / 2, 1.6, 0.16)  # ears
        return base * 0.30, base * 0.40, base * 0.34

    return _sphere_patch(radius, n)


def lumpy_mesh(n: int = 160) -> Mesh:
    def radius(theta, phi):
        d = np.stack([np.sin(phi) * np.sin(theta), np.cos(phi), np.sin(phi) * np.cos(theta)], -1)
        r = 0.40 + 0.05 * np.sin(3.1 * d[:, 0] + 1.3 * d[:, 1] + 0.7) + 0.04 * np.cos(2.3 * d[:, 1] - 1.7 * d[:, 2] + 0.2)
        for c, amp, width in (((0.6, 0.5, -0.62), 0.14, 0.35), ((-0.7, 0.1, -0.7), 0.10, 0.3), ((0.1, -0.8, 0.6), 0.12, 0.4)):
            c = np.array(c) / np.linalg.norm(c)
            r = r + amp * np.exp(-np.sum((d - c) ** 2, axis=1) / width**2)
        return r * 1.15, r * 0.95, r * 0.85

    return _sphere_patch(radius, n)


def label_texture(size: int = 1024, repeats: int = 6) -> np.ndarray:
    """The can's chart layout (bench.synthetic.can_mesh): side in v 0.34-1 (u = angle), caps below."""
    from PIL import Image, ImageDraw, ImageFont

    tile_w = size // repeats
    side_h = int(size * 0.66)
    tile = Image.new("RGB", (tile_w, side_h), (238, 226, 196))
    d = ImageDraw.Draw(tile)
    d.rectangle((0, 0, tile_w, side_h // 10), fill=(170, 30, 40))
    d.rectangle((0, side_h - side_h // 10, tile_w, side_h), fill=(170, 30, 40))
    d.rectangle((0, side_h // 2 - 6, tile_w, side_h // 2 + 6), fill=(30, 60, 150))
    d.ellipse((tile_w * 0.2, side_h * 0.18, tile_w * 0.8, side_h * 0.18 + tile_w * 0.6), fill=(240, 180, 40),
              outline=(30, 30, 30), width=3)
    font = ImageFont.load_default(size=max(8, tile_w // 6))
    d.text((tile_w * 0.1, side_h * 0.62), "ORBI", fill=(20, 20, 20), font=font)
    d.text((tile_w * 0.1, side_h * 0.75), "TEX", fill=(120, 20, 20), font=font)
    img = Image.new("RGB", (size, size), (90, 90, 100))
    for k in range(repeats + 1):
        img.paste(tile, (k * tile_w, 0))
    rgb = np.asarray(img, dtype=np.float32) / 255.0
    out = rgb.copy()
    caps = out[side_h:]
    yy, xx = np.mgrid[0:caps.shape[0], 0:size] / size
    caps[:] = np.stack([0.55 + 0.2 * np.sin(40 * xx), 0.55 + 0.2 * np.sin(40 * yy), 0.6 + 0 * xx], -1)
    # the side chart's u runs once around: resample the tiles so exactly `repeats` fit in u 0-1
    cols = np.minimum((np.arange(size) * repeats * tile_w / size).astype(int), rgb.shape[1] - 1)
    out[:side_h] = rgb[:side_h, cols]
    return np.clip(out, 0, 1).astype(np.float32)


def head_texture(size: int = 1024) -> np.ndarray:
    """Mirror-symmetric in u around 0.5 (the face's centre line; the back of the head at u = 0 and 1)."""
    v, u = np.mgrid[0:size, 0:size] / size  # v: row (0 = top of the head)
    du = np.abs(u - 0.5)  # distance from the face's centre line
    rgb = np.stack([0.86 + 0 * u, 0.68 + 0 * u, 0.56 + 0 * u], -1)
    hair = (v < 0.28) | ((du > 0.28) & (v < 0.55))
    strands = 0.5 + 0.5 * np.sin(2 * math.pi * (du * 40 + v * 12))
    rgb[hair] = np.stack([0.30 + 0.15 * strands, 0.18 + 0.08 * strands, 0.08 + 0 * strands], -1)[hair]
    band = (np.abs(v - 0.30) < 0.025)
    checker = ((np.floor(du * 60) + np.floor(v * 60)) % 2)
    rgb[band] = np.stack([0.15 + 0.7 * checker, 0.35 + 0 * checker, 0.75 - 0.5 * checker], -1)[band]
    for eu, ev, r, col in ((0.07, 0.47, 0.025, (0.1, 0.3, 0.6)), (0.0, 0.66, 0.02, (0.7, 0.2, 0.25))):
        spot = (du - eu) ** 2 + (v - ev) ** 2 < r**2
        rgb[spot] = col
    mouth = (np.abs(v - 0.62) < 0.008) & (du < 0.05)
    rgb[mouth] = (0.6, 0.15, 0.2)
    dots = ((du * 50 % 1 - 0.5) ** 2 + (v * 50 % 1 - 0.5) ** 2 < 0.06) & (v > 0.7) & (du > 0.15)
    rgb[dots] = (0.45, 0.5, 0.2)  # a dotted collar round the back
    return rgb.astype(np.float32)


def blotch_texture(size: int = 1024, seed: int = 3) -> np.ndarray:
    rgb = plaid_texture(size).copy()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for _ in range(7):
        cx, cy, r = rng.random(), rng.random(), rng.uniform(0.03, 0.08)
        spot = (xx - cx) ** 2 + ((yy - cy) * 1.7) ** 2 < r**2
        rgb[spot] = rng.random(3) * 0.8 + 0.1
    return rgb.astype(np.float32)


def make(name: str, texture_size: int = 1024) -> tuple[Mesh, np.ndarray]:
    if name == "label_can":
        return can_mesh(n=192), label_texture(texture_size)
    if name == "head":
        return head_mesh(), head_texture(texture_size)
    if name == "lumpy":
        return lumpy_mesh(), blotch_texture(texture_size)
    raise ValueError(f"unknown asset {name!r}; known: {', '.join(NAMES)}")


def _ring(azimuths_deg, elevations_deg, size: int) -> list[Camera]:  # type: ignore[no-untyped-def]
    cams = []
    for el in elevations_deg:
        for az in azimuths_deg:
            a, e = math.radians(az), math.radians(el)
            eye = ORBIT_RADIUS * np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
            cams.append(Camera.from_fov(look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0])), ORBIT_VFOV_DEG, size, size))
    return cams


def seen_cameras(name: str, size: int = 256) -> list[Camera]:
    """The views a bake gets: the front (the head: its front and right side, as a 3/4 capture)."""
    if name == "head":
        return _ring(np.linspace(-10, 120, 8), (-20, 10, 40), size)
    return _ring(np.linspace(-60, 60, 7), (-25, 5, 35), size)


def back_cameras(name: str, size: int = 256) -> list[Camera]:
    """Held-out views of what the seen views miss."""
    if name == "head":
        return _ring((-150, -110, -70), (-10, 15), size)
    return _ring((140, 180, 220), (-10, 15), size)
