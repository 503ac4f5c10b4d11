"""Synthetic textured assets with exact ground truth, made in code (no downloads).

Each asset is a `Mesh` built from parametric patches (every patch its own UV chart, like an
artist's unwrap) plus a procedural base-colour texture. `render_views` renders them with the
project's G-buffer rasterizer (bilinear texture lookups, optional supersampling for anti-aliased
edges), and `corrupt` makes a clean view set look like a video model's output: a smooth 1-3 px
warp per frame, per-frame colour jitter and a slight blur.

Assets: "text" (a can covered in printed text), "plaid" (an organic blob with a plaid and a
fine checker), "thin" (a thin two-sided plate on thin legs, with colour blocks), "print" (a box
with fine black print on white: small type, every misplaced pixel shows), "flat" (the blob in a few
large flat colours with sharp borders: where blending smears an edge, a poster shows it).
`corrupt_random` draws each frame's corruption strength at random (some frames nearly clean,
some worse than `corrupt`'s), as generated videos vary from frame to frame.
Reused by the bake tests and benchmark and by other stages' benchmarks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from backend.assets.mesh import Mesh, make_mesh
from backend.assets.cameras import Camera

ASSETS = ("text", "plaid", "thin", "print", "flat")


@dataclass(frozen=True)
class Asset:
    name: str
    mesh: Mesh
    texture: np.ndarray  # (T, T, 3) float32 in [0, 1], row 0 = v 1


# --- geometry: parametric patches, one UV chart each ---------------------------------------------

def patch(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], nu: int, nv: int,
          uv_rect: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid patch: fn(s, t) -> points for s, t in [0, 1]; UVs fill uv_rect = (u0, v0, u1, v1)."""
    s, t = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="xy")
    pos = fn(s.ravel(), t.ravel())
    u0, v0, u1, v1 = uv_rect
    uv = np.stack([u0 + (u1 - u0) * s.ravel(), v0 + (v1 - v0) * t.ravel()], 1)
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nv + 1, nu + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return pos, faces, uv


def orient_outward(pos: np.ndarray, faces: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Flip a patch's winding when its (area-weighted) normals point towards `centre`."""
    v = pos[faces]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    return faces[:, ::-1] if (n * (v.mean(1) - centre)).sum() < 0 else faces


def combine(patches: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], name: str,
            centre: Sequence[float] | None = (0.0, 0.0, 0.0)) -> Mesh:
    """One mesh from patches; with `centre`, each patch is wound to face away from it."""
    pos, faces, uvs, base = [], [], [], 0
    for p, f, uv in patches:
        if centre is not None:
            f = orient_outward(p, f, np.asarray(centre, dtype=float))
        pos.append(p)
        faces.append(f + base)
        uvs.append(uv)
        base += len(p)
    return make_mesh(np.concatenate(pos), np.concatenate(faces), np.concatenate(uvs), name=name)


def can_mesh(radius: float = 0.3, height: float = 0.8, n: int = 96) -> Mesh:
    def side(s, t):
        a = 2 * math.pi * s
        return np.stack([radius * np.sin(a), height * (t - 0.5), radius * np.cos(a)], 1)

    def cap(y, up):
        def fn(s, t):
            # square cap chart: (s, t) in the unit square -> disc (radius follows the square's max norm)
            x, z = 2 * s - 1, 2 * t - 1
            m = np.maximum(np.abs(x), np.abs(z))
            length = np.sqrt(x * x + z * z)
            scale = np.where(length > 1e-9, m / np.maximum(length, 1e-9), 0.0)
            return np.stack([radius * x * scale, np.full_like(s, y), radius * z * scale * (-1 if up else 1)], 1)
        return fn

    return combine([patch(side, n, n // 3, (0.0, 0.34, 1.0, 1.0)),
                    patch(cap(height / 2, True), 24, 24, (0.02, 0.01, 0.32, 0.31)),
                    patch(cap(-height / 2, False), 24, 24, (0.36, 0.01, 0.66, 0.31))], "can")


def blob_mesh(n: int = 128) -> Mesh:
    def fn(s, t):
        theta, phi = 2 * math.pi * s, math.pi * (1 - t)
        r = 0.42 * (1 + 0.12 * np.sin(3 * theta) * np.sin(2 * phi) + 0.08 * np.cos(5 * phi))
        return np.stack([r * np.sin(phi) * np.sin(theta), 0.9 * r * np.cos(phi), r * np.sin(phi) * np.cos(theta)], 1)

    return combine([patch(fn, n, n // 2, (0.0, 0.0, 1.0, 1.0))], "blob")


def torus_mesh(major: float = 0.32, minor: float = 0.13, n: int = 96) -> Mesh:
    """A torus: one chart with no singular points (clean known-answer tests)."""
    def fn(s, t):
        a, b = 2 * math.pi * s, 2 * math.pi * t
        r = major + minor * np.cos(b)
        return np.stack([r * np.sin(a), minor * np.sin(b), r * np.cos(a)], 1)

    return combine([patch(fn, n, n // 2, (0.0, 0.0, 1.0, 1.0))], "torus", centre=None)


def box_patches(lo: Sequence[float], hi: Sequence[float], rect: tuple[float, float, float, float], n: int = 4):  # type: ignore[no-untyped-def]
    """Six outward faces of a box, their charts tiled 3 x 2 inside rect."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    u0, v0, u1, v1 = rect
    du, dv = (u1 - u0) / 3, (v1 - v0) / 2
    out = []
    faces = [(0, 1, 2, hi[0]), (0, 2, 1, lo[0]), (1, 2, 0, hi[1]), (1, 0, 2, lo[1]), (2, 0, 1, hi[2]), (2, 1, 0, lo[2])]
    for k, (axis, a1, a2, value) in enumerate(faces):
        def fn(s, t, axis=axis, a1=a1, a2=a2, value=value):
            p = np.zeros((len(s), 3))
            p[:, axis] = value
            p[:, a1] = lo[a1] + (hi[a1] - lo[a1]) * s
            p[:, a2] = lo[a2] + (hi[a2] - lo[a2]) * t
            return p
        cu, cv = u0 + du * (k % 3), v0 + dv * (k // 3)
        pos, f, uv = patch(fn, n, n, (cu + 0.01 * du, cv + 0.01 * dv, cu + 0.99 * du, cv + 0.99 * dv))
        out.append((pos, orient_outward(pos, f, (lo + hi) / 2), uv))
    return out


def thin_mesh() -> Mesh:
    plate = box_patches((-0.45, 0.10, -0.3), (0.45, 0.125, 0.3), (0.0, 0.5, 1.0, 1.0), n=24)
    legs = []
    for k, (x, z) in enumerate([(-0.38, -0.23), (0.38, -0.23), (-0.38, 0.23), (0.38, 0.23)]):
        legs += box_patches((x - 0.02, -0.4, z - 0.02), (x + 0.02, 0.10, z + 0.02),
                            (0.25 * k, 0.0, 0.25 * (k + 1), 0.5), n=6)
    return combine(plate + legs, "thin", centre=None)


# --- textures ---------------------------------------------------------------------------------------

def text_texture(size: int = 1024, seed: int = 0) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (236, 228, 210))
    draw = ImageDraw.Draw(img)
    words = ("ORBITEX", "texture", "bake", "seam", "voxel", "Ink3D", "label", "view", "42", "mesh", "paint", "UV")
    y = 0
    while y < size:
        px = int(rng.integers(size // 64, size // 20))
        font = ImageFont.load_default(size=px)
        x = int(rng.integers(0, px))
        colour = tuple(int(c) for c in rng.integers(0, 160, 3))
        while x < size:
            word = str(rng.choice(words))
            draw.text((x, y), word, fill=colour, font=font)
            x += int(draw.textlength(word + " ", font=font))
        y += int(px * 1.25)
    for _ in range(6):  # a few coloured bands, as on printed labels
        y0 = int(rng.integers(0, size))
        draw.rectangle((0, y0, size, y0 + size // 80), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return np.asarray(img, dtype=np.float32) / 255.0


def plaid_texture(size: int = 1024) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    stripes_x = 0.5 + 0.5 * np.sin(2 * math.pi * 9 * xx)
    stripes_y = 0.5 + 0.5 * np.sin(2 * math.pi * 7 * yy)
    rgb = np.stack([0.15 + 0.6 * stripes_x * 0.8 + 0.2 * stripes_y,
                    0.10 + 0.5 * stripes_y,
                    0.30 + 0.4 * (1 - stripes_x) * stripes_y], -1)
    checker = ((np.floor(xx * 64) + np.floor(yy * 64)) % 2)[..., None]
    rgb = rgb * (0.8 + 0.2 * checker)
    return np.clip(rgb, 0, 1).astype(np.float32)


def block_texture(size: int = 1024, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cells = 16
    colours = rng.random((cells, cells, 3)) * 0.8 + 0.1
    yy, xx = np.mgrid[0:size, 0:size] * cells // size
    rgb = colours[yy, xx]
    fine = np.mgrid[0:size, 0:size].sum(0) % 16 < 2  # thin diagonal lines
    rgb[fine] *= 0.5
    return rgb.astype(np.float32)


def print_texture(size: int = 1024, seed: int = 3) -> np.ndarray:
    """Fine black print on white: lines of small type (about 1/100 of the side) and hairlines."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (250, 250, 246))
    draw = ImageDraw.Draw(img)
    words = ("ingredients", "water", "sugar", "0.33 L", "best before", "lot 42", "ORBITEX", "recycle", "%", "kcal")
    px = max(6, size // 90)
    font = ImageFont.load_default(size=px)
    y = 0
    while y < size:
        x = int(rng.integers(0, px))
        while x < size:
            word = str(rng.choice(words))
            draw.text((x, y), word, fill=(20, 20, 24), font=font)
            x += int(draw.textlength(word + " ", font=font))
        y += int(px * 1.4)
        if rng.random() < 0.15:
            draw.line((0, y - 2, size, y - 2), fill=(20, 20, 24), width=1)
    return np.asarray(img, dtype=np.float32) / 255.0


def flat_texture(size: int = 1024, seed: int = 4) -> np.ndarray:
    """A few large regions of saturated flat colour with sharp, curved borders (a poster)."""
    rng = np.random.default_rng(seed)
    palette = np.array([[0.85, 0.15, 0.12], [0.10, 0.35, 0.75], [0.95, 0.80, 0.10], [0.10, 0.60, 0.30],
                        [0.95, 0.95, 0.92], [0.12, 0.10, 0.12]], np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    centres = rng.random((9, 2))
    d = (xx[..., None] - centres[:, 0]) ** 2 + (yy[..., None] - centres[:, 1]) ** 2
    region = d.argmin(-1)
    return palette[region % len(palette)]


def box_mesh() -> Mesh:
    return combine(box_patches((-0.4, -0.3, -0.25), (0.4, 0.3, 0.25), (0.0, 0.0, 1.0, 1.0), n=16), "box",
                   centre=None)


def make_asset(name: str, texture_size: int = 1024) -> Asset:
    if name == "text":
        return Asset(name, can_mesh(), text_texture(texture_size))
    if name == "plaid":
        return Asset(name, blob_mesh(), plaid_texture(texture_size))
    if name == "thin":
        return Asset(name, thin_mesh(), block_texture(texture_size))
    if name == "print":
        return Asset(name, box_mesh(), print_texture(texture_size))
    if name == "flat":
        return Asset(name, blob_mesh(), flat_texture(texture_size))
    raise ValueError(f"unknown synthetic asset {name!r}; known: {', '.join(ASSETS)}")


# --- rendering and corruption ------------------------------------------------------------------------

def render_views(mesh: Mesh, texture: np.ndarray, cameras: Sequence[Camera], rasterizer: str = "auto",
                 supersample: int = 1, background: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, 3) float32 and coverage masks (N, H, W) bool of the textured mesh."""
    from backend.render.gbuffer import get_rasterizer

    raster = get_rasterizer(rasterizer)
    tex = torch.as_tensor(texture).permute(2, 0, 1)[None]
    uvs = torch.as_tensor(mesh.uvs)
    faces = torch.as_tensor(mesh.faces, dtype=torch.long)
    images, masks = [], []
    for cam in cameras:
        big = cam.resized(cam.width * supersample, cam.height * supersample)
        tri, bary = raster.rasterize(mesh, big)
        hit = tri >= 0
        uv = (uvs[faces[tri.clamp(min=0).long()]] * bary[..., None]).sum(-2)
        grid = torch.stack([uv[..., 0] * 2 - 1, 1 - 2 * uv[..., 1]], -1)[None].float()
        rgb = torch.nn.functional.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        rgb = torch.where(hit[None], rgb, torch.full_like(rgb, background))
        cover = hit.float()[None]
        if supersample > 1:
            rgb = torch.nn.functional.avg_pool2d(rgb[None], supersample)[0]
            cover = torch.nn.functional.avg_pool2d(cover[None], supersample)[0]
        images.append(rgb.permute(1, 2, 0))
        masks.append(cover[0] > 0.5)
    return torch.stack(images).numpy(), torch.stack(masks).numpy()


def corrupt(images: np.ndarray, seed: int = 0, warp_px: tuple[float, float] = (1.0, 3.0),
            jitter: float = 0.05, blur_sigma: tuple[float, float] = (0.3, 0.8)) -> np.ndarray:
    """Per frame: a smooth random warp of 1-3 px, colour gain/bias jitter and a slight blur."""
    rng = np.random.default_rng(seed)
    out = []
    n, h, w, _ = images.shape
    for i in range(n):
        img = torch.as_tensor(images[i]).permute(2, 0, 1)[None]
        # smooth displacement: a 4x4 random field upsampled, scaled to 1-3 px
        amp = rng.uniform(*warp_px)
        field = torch.as_tensor(rng.normal(size=(1, 2, 4, 4)), dtype=torch.float32)
        field = torch.nn.functional.interpolate(field, size=(h, w), mode="bicubic", align_corners=True)
        field = field / field.abs().amax().clamp(min=1e-6) * amp
        ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        gx = (xs + field[0, 0]) / w * 2 - 1
        gy = (ys + field[0, 1]) / h * 2 - 1
        img = torch.nn.functional.grid_sample(img, torch.stack([gx, gy], -1)[None], mode="bilinear",
                                              padding_mode="border", align_corners=False)
        sigma = rng.uniform(*blur_sigma)
        radius = max(1, int(math.ceil(2 * sigma)))
        k = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
        k = k / k.sum()
        img = torch.nn.functional.conv2d(torch.nn.functional.pad(img, (radius, radius, 0, 0), mode="replicate"),
                                         k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
        img = torch.nn.functional.conv2d(torch.nn.functional.pad(img, (0, 0, radius, radius), mode="replicate"),
                                         k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
        gain = torch.as_tensor(1 + rng.uniform(-jitter, jitter, 3), dtype=torch.float32).view(1, 3, 1, 1)
        bias = torch.as_tensor(rng.uniform(-jitter / 2, jitter / 2, 3), dtype=torch.float32).view(1, 3, 1, 1)
        out.append((img * gain + bias).clamp(0, 1)[0].permute(1, 2, 0))
    return torch.stack(out).numpy()


def corrupt_random(images: np.ndarray, seed: int = 0, strength: tuple[float, float] = (0.1, 1.5)) -> np.ndarray:
    """`corrupt` with each frame's strength drawn from `strength` (1 = corrupt's defaults: 1-3 px
    warp, 5 % colour jitter, 0.3-0.8 px blur), so a set mixes near-clean and bad frames."""
    rng = np.random.default_rng(seed)
    out = []
    for i, image in enumerate(images):
        s = float(rng.uniform(*strength))
        out.append(corrupt(image[None], seed=seed * 1000 + i, warp_px=(1.0 * s, 3.0 * s), jitter=0.05 * s,
                           blur_sigma=(max(0.3 * s, 0.05), max(0.8 * s, 0.1)))[0])
    return np.stack(out)


def sphere_cameras(count: int, size: int, seed: int, elevation: tuple[float, float] = (-50.0, 70.0),
                   radius: tuple[float, float] = (1.3, 1.8)) -> list[Camera]:
    """`count` cameras at random azimuths (jittered even spacing), elevations and distances, all
    looking at the origin with the orbit rig's lens: a sparse hand-held capture, not an orbit."""
    from backend.assets.cameras import ORBIT_VFOV_DEG, look_at

    rng = np.random.default_rng(seed)
    cams = []
    for i in range(count):
        az = 2 * math.pi * (i + rng.uniform(-0.35, 0.35)) / count
        el = math.radians(rng.uniform(*elevation))
        r = rng.uniform(*radius)
        eye = r * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
        cams.append(Camera.from_fov(look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0])), ORBIT_VFOV_DEG, size, size))
    return cams


def grazing_cameras(count: int, size: int, seed: int) -> list[Camera]:
    """Held-out views few training views resemble: steep (70-85 deg, looking along the sides) and
    close oblique ones (1.1 units away, aimed off the centre, so surfaces are seen edge-on)."""
    from backend.assets.cameras import ORBIT_VFOV_DEG, look_at

    rng = np.random.default_rng(seed)
    cams = []
    for i in range(count):
        az = 2 * math.pi * (i + rng.uniform(0, 1)) / count
        steep = i % 2 == 0
        el = math.radians(rng.uniform(70, 85) * (1 if i % 4 == 0 else -1)) if steep else math.radians(rng.uniform(-10, 10))
        r = 1.6 if steep else 1.1
        eye = r * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
        target = np.zeros(3) if steep else rng.uniform(-0.15, 0.15, 3)
        up = np.array([0.0, 1.0, 0.0]) if not steep else np.array([math.sin(az), 0.0, math.cos(az)])
        cams.append(Camera.from_fov(look_at(eye, target, up), ORBIT_VFOV_DEG, size, size))
    return cams


def held_out_cameras(count: int = 24, size: int = 512, seed: int = 7) -> list[Camera]:
    """Views off both orbits: random azimuths, elevations in [-45, 45] deg, same rig radius/lens."""
    from backend.assets.cameras import ORBIT_RADIUS, ORBIT_VFOV_DEG, look_at

    rng = np.random.default_rng(seed)
    cams = []
    for i in range(count):
        az = 2 * math.pi * (i + rng.uniform(0.2, 0.8)) / count
        el = math.radians(rng.uniform(-45, 45))
        eye = ORBIT_RADIUS * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
        cams.append(Camera.from_fov(look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0])), ORBIT_VFOV_DEG, size, size))
    return cams
