"""Pinhole cameras in the OpenGL/Blender convention and Ink3D's orbit rigs.

A camera looks down its local -Z with +Y up; `c2w` is camera-to-world (as in transforms.json).
Pixel (0, 0) is the top-left pixel, whose centre is at (0.5, 0.5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

ORBIT_RADIUS = 1.5
ORBIT_VFOV_DEG = 2 * math.degrees(math.atan(16.0 / 35.0))  # 35 mm lens on a 32 mm sensor: 49.13 deg


@dataclass(frozen=True)
class Camera:
    c2w: np.ndarray  # (4, 4) float64 camera-to-world
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        values = np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float64)
        c2w = np.asarray(self.c2w, dtype=np.float64)
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all() or not np.isfinite(values).all():
            raise InputError("camera has a non-finite or malformed matrix or intrinsics")
        if self.fx <= 0 or self.fy <= 0 or self.width <= 0 or self.height <= 0:
            raise InputError("camera focal length and image size must be positive")
        if abs(np.linalg.det(c2w[:3, :3])) < 1e-6:
            raise InputError("camera rotation is singular")
        object.__setattr__(self, "c2w", c2w)

    @classmethod
    def from_fov(cls, c2w: np.ndarray, vfov_deg: float, width: int, height: int) -> "Camera":
        fy = 0.5 * height / math.tan(math.radians(vfov_deg) / 2)
        return cls(np.asarray(c2w, dtype=np.float64), fy, fy, width / 2, height / 2, width, height)

    @property
    def position(self) -> np.ndarray:
        return self.c2w[:3, 3]

    @property
    def forward(self) -> np.ndarray:
        """Unit viewing direction in world space."""
        f = -self.c2w[:3, 2]
        return f / np.linalg.norm(f)

    def w2c(self) -> np.ndarray:
        return np.linalg.inv(self.c2w)

    def resized(self, width: int, height: int) -> "Camera":
        sx, sy = width / self.width, height / self.height
        return Camera(self.c2w, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)

    def projection(self, near: float, far: float) -> np.ndarray:
        """OpenGL clip matrix for this camera's intrinsics (clip y up, image row 0 at the top)."""
        w, h = self.width, self.height
        p = np.zeros((4, 4))
        p[0, 0] = 2 * self.fx / w
        p[0, 2] = 1 - 2 * self.cx / w
        p[1, 1] = 2 * self.fy / h
        p[1, 2] = 2 * self.cy / h - 1
        p[2, 2] = -(far + near) / (far - near)
        p[2, 3] = -2 * far * near / (far - near)
        p[3, 2] = -1
        return p

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates (N, 2) and depth along the view axis (N,)."""
        w2c = self.w2c()
        cam = points @ w2c[:3, :3].T + w2c[:3, 3]
        depth = -cam[:, 2]
        safe = np.where(np.abs(depth) < 1e-12, 1e-12, depth)
        px = self.fx * cam[:, 0] / safe + self.cx
        py = -self.fy * cam[:, 1] / safe + self.cy
        return np.stack([px, py], axis=1), depth

    def pixel_rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Origin (3,) and unit ray directions (H, W, 3) through every pixel centre."""
        xs = (np.arange(self.width) + 0.5 - self.cx) / self.fx
        ys = -(np.arange(self.height) + 0.5 - self.cy) / self.fy
        gx, gy = np.meshgrid(xs, ys)
        d = np.stack([gx, gy, -np.ones_like(gx)], axis=-1) @ self.c2w[:3, :3].T
        return self.position, d / np.linalg.norm(d, axis=-1, keepdims=True)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Camera-to-world matrix of a camera at `eye` looking at `target`."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-9:
        raise InputError("look_at: up vector is parallel to the viewing direction")
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, eye
    return c2w


def reference_c2w(radius: float = ORBIT_RADIUS) -> np.ndarray:
    """Frame 0 of both orbits: on +Z looking at the origin, +Y up (the front of a glTF asset)."""
    return look_at(np.array([0.0, 0.0, radius]), np.zeros(3), np.array([0.0, 1.0, 0.0]))


def orbit(kind: str, frames: int = 61, size: int = 512, radius: float = ORBIT_RADIUS,
          vfov_deg: float = ORBIT_VFOV_DEG, frame0_c2w: np.ndarray | None = None) -> list[Camera]:
    """Ink3D's orbits: 'horizontal' turns about world +Y (elevation 0), 'vertical' turns along the
    meridian through frame 0 (about the camera's own right axis). Both start at frame 0, the same
    view; frame i is rotated by 360 * i / frames degrees. `frame0_c2w` puts frame 0 elsewhere
    (a user's reference camera); the orbit then turns about the origin around that view.
    """
    if frames < 1 or size < 8:
        raise InputError("an orbit needs at least 1 frame of at least 8 pixels")
    if kind not in ("horizontal", "vertical"):
        raise InputError(f"unknown orbit {kind!r}: use 'horizontal' or 'vertical'")
    frame0 = reference_c2w(radius) if frame0_c2w is None else np.asarray(frame0_c2w, dtype=np.float64)
    cams = []
    for i in range(frames):
        angle = 360.0 * i / frames
        if kind == "horizontal":
            c2w = _axis_rotation(np.array([0.0, 1.0, 0.0]), angle) @ frame0
        else:
            # rotate about the axis through the origin parallel to the frame-0 camera's right vector
            right = frame0[:3, 0]
            c2w = _axis_rotation(right, -angle) @ frame0
        cams.append(Camera.from_fov(c2w, vfov_deg, size, size))
    return cams


def _axis_rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    x, y, z = axis
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    r = np.eye(4)
    r[:3, :3] = np.eye(3) + s * k + (1 - c) * (k @ k)
    return r
