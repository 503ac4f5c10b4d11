"""Cameras and Ink3D's orbit rigs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from backend.errors import InputError
from backend.assets.cameras import ORBIT_RADIUS, Camera, look_at, orbit


def test_frame0_of_both_orbits_is_the_same_view() -> None:
    h, v = orbit("horizontal", 61, 512), orbit("vertical", 61, 512)
    np.testing.assert_array_equal(h[0].c2w, v[0].c2w)
    assert (h[0].fx, h[0].fy, h[0].cx, h[0].cy) == (v[0].fx, v[0].fy, v[0].cx, v[0].cy)
    np.testing.assert_allclose(h[0].position, [0, 0, ORBIT_RADIUS], atol=1e-12)
    assert not np.allclose(h[1].c2w, v[1].c2w)


@pytest.mark.parametrize("kind", ["horizontal", "vertical"])
def test_orbit_radius_fov_and_aim(kind: str) -> None:
    cams = orbit(kind, 12, 256)
    for i, cam in enumerate(cams):
        assert np.linalg.norm(cam.position) == pytest.approx(1.5, abs=1e-9)
        np.testing.assert_allclose(cam.forward, -cam.position / 1.5, atol=1e-9)  # looks at the origin
        vfov = math.degrees(2 * math.atan(cam.height / 2 / cam.fy))
        assert vfov == pytest.approx(49.13, abs=0.01)
        np.testing.assert_allclose(cam.c2w[:3, :3] @ cam.c2w[:3, :3].T, np.eye(3), atol=1e-12)
        angle = math.degrees(math.acos(np.clip(cam.position @ cams[0].position / 1.5 ** 2, -1, 1)))
        expected = 360 * i / 12
        assert angle == pytest.approx(min(expected, 360 - expected), abs=1e-6)
    if kind == "horizontal":  # elevation 0, up stays +Y
        assert all(abs(c.position[1]) < 1e-9 and c.c2w[1, 1] == pytest.approx(1) for c in cams)
    else:  # along the meridian through frame 0 (the x = 0 plane), going up first
        assert all(abs(c.position[0]) < 1e-9 for c in cams) and cams[1].position[1] > 0


def test_project_known_points() -> None:
    cam = orbit("horizontal", 1, 512)[0]  # on +Z looking at the origin
    f = 256 / math.tan(math.radians(49.1343) / 2)
    points = np.array([[0, 0, 0], [0.1, 0.2, 0], [-0.3, 0, 0.5]])
    pixels, depth = cam.project(points)
    np.testing.assert_allclose(pixels[0], [256, 256], atol=1e-9)
    np.testing.assert_allclose(pixels[1], [256 + cam.fx * 0.1 / 1.5, 256 - cam.fy * 0.2 / 1.5], atol=1e-9)
    np.testing.assert_allclose(pixels[2], [256 - cam.fx * 0.3 / 1.0, 256], atol=1e-9)
    np.testing.assert_allclose(depth, [1.5, 1.5, 1.0], atol=1e-12)
    assert cam.fx == pytest.approx(f, rel=1e-4)


def test_rays_and_projection_matrix_agree_with_project() -> None:
    c2w = look_at(np.array([0.7, -0.4, 1.1]), np.array([0.1, 0.1, 0]), np.array([0, 1.0, 0]))
    cam = Camera(c2w, 120.0, 110.0, 70.0, 41.0, 150, 90)
    origin, rays = cam.pixel_rays()
    points = origin + 1.3 * rays[[5, 60, 89], [3, 77, 149]]
    pixels, _ = cam.project(points)
    np.testing.assert_allclose(pixels, [[3.5, 5.5], [77.5, 60.5], [149.5, 89.5]], atol=1e-9)
    clip = cam.projection(0.1, 10.0) @ cam.w2c() @ np.vstack([points.T, np.ones(3)])
    ndc = clip[:3] / clip[3]
    # OpenGL window x = (ndc + 1) / 2 * w; window rows count from the bottom, image rows from the top
    np.testing.assert_allclose((ndc[0] + 1) / 2 * cam.width, pixels[:, 0], atol=1e-9)
    np.testing.assert_allclose(cam.height - (ndc[1] + 1) / 2 * cam.height, pixels[:, 1], atol=1e-9)
    assert np.all(np.abs(ndc[2]) < 1)


def test_bad_orbits_and_cameras() -> None:
    with pytest.raises(InputError):
        orbit("diagonal", 10, 64)
    with pytest.raises(InputError):
        orbit("horizontal", 0, 64)
    bad = np.eye(4)
    bad[0, 0] = np.nan
    with pytest.raises(InputError):
        Camera(bad, 1, 1, 1, 1, 8, 8)
