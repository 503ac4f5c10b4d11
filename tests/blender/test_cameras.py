"""Blender camera -> view-set camera: a known 3D point projected through Blender's own camera math
(bpy_extras.object_utils.world_to_camera_view) and through the view-set camera (here, and in the
backend's own reader of the written transforms.json) lands on the same pixel, for every sensor
fit, lens shift, resolution (percentage included) and pixel aspect."""
from __future__ import annotations

import json
import math
import random
import subprocess

import bpy
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Euler, Matrix, Vector

from orbitex_testing import ROOT, backend_python, import_addon

import_addon()
from orbitex.addon import cameras  # noqa: E402
from orbitex.addon.cameras import GLTF_FROM_BLENDER, CameraError  # noqa: E402

# (sensor_fit, lens, sensor w/h, shift x/y, resolution x/y/percentage, pixel aspect x/y)
SETUPS = [
    ("AUTO", 35.0, (36.0, 24.0), (0.0, 0.0), (640, 480, 100), (1.0, 1.0)),
    ("AUTO", 50.0, (36.0, 24.0), (0.1, -0.05), (480, 640, 50), (1.0, 1.0)),  # portrait: AUTO fits the height
    ("HORIZONTAL", 24.0, (32.0, 18.0), (-0.2, 0.15), (320, 240, 100), (1.0, 1.0)),
    ("VERTICAL", 85.0, (36.0, 30.0), (0.05, 0.3), (300, 500, 100), (1.0, 1.0)),
    ("AUTO", 40.0, (30.0, 24.0), (0.12, 0.07), (400, 300, 100), (1.0, 2.0)),  # tall pixels
    ("VERTICAL", 28.0, (36.0, 24.0), (-0.1, -0.2), (360, 200, 100), (3.0, 2.0)),  # wide pixels
]


def _camera(name, setup):
    fit, lens, (sw, sh), (shx, shy), (rx, ry, pct), (pax, pay) = setup
    data = bpy.data.cameras.new(name)
    data.sensor_fit, data.lens, data.sensor_width, data.sensor_height = fit, lens, sw, sh
    data.shift_x, data.shift_y = shx, shy
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    obj.location = (0.4, -4.0, 1.1)
    obj.rotation_euler = Euler((math.radians(80), math.radians(4), math.radians(6)))
    obj.scale = (1.5, 1.5, 1.5)  # a scaled camera object sees the same picture
    r = bpy.context.scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = rx, ry, pct
    r.pixel_aspect_x, r.pixel_aspect_y = pax, pay
    bpy.context.view_layer.update()
    return obj


def _points(obj, count=12):
    """Random points in front of the camera, spread over (and a bit beyond) its view."""
    rng = random.Random(7)
    out = []
    for _ in range(count):
        local = Vector((rng.uniform(-1.2, 1.2), rng.uniform(-1.0, 1.0), -rng.uniform(2.0, 6.0)))
        out.append(obj.matrix_world.normalized() @ local)
    return out


def _blender_pixels(obj, points):
    scene = bpy.context.scene
    w, h = cameras.render_size(scene)
    out = []
    for p in points:
        ndc = world_to_camera_view(scene, obj, p)  # (0, 0) bottom-left, (1, 1) top-right of the frame
        out.append((ndc.x * w, (1.0 - ndc.y) * h))
    return out


@pytest.fixture()
def clean_scene():
    yield
    for obj in [o for o in bpy.data.objects if o.type == "CAMERA" and o.name.startswith("RT")]:
        data = obj.data
        bpy.data.objects.remove(obj)
        bpy.data.cameras.remove(data)


@pytest.mark.parametrize("setup", SETUPS, ids=[f"{s[0]}-{s[4][0]}x{s[4][1]}-pa{s[5][0]:g}:{s[5][1]:g}" for s in SETUPS])
def test_view_camera_projects_like_blender(setup, clean_scene):
    obj = _camera("RT", setup)
    view = cameras.view_camera(obj, bpy.context.scene)
    assert (view.w, view.h) == cameras.render_size(bpy.context.scene)
    points = _points(obj)
    expected = _blender_pixels(obj, points)
    for p, (u, v) in zip(points, expected):
        pu, pv, depth = view.project(GLTF_FROM_BLENDER @ p)
        assert depth > 0
        assert pu == pytest.approx(u, abs=1e-3) and pv == pytest.approx(v, abs=1e-3), (p, (pu, pv), (u, v))


def test_backend_reads_the_written_view_set_the_same_way(tmp_path, clean_scene):
    """transforms.json as written, read by the backend's own view-set parser and Camera.project."""
    python = backend_python()
    if python is None:
        pytest.skip("no backend environment")
    cases = []
    for i, setup in enumerate(SETUPS):
        obj = _camera(f"RT{i}", setup)
        view = cameras.view_camera(obj, bpy.context.scene)
        points = _points(obj, 5)
        cases.append({"frame": view.entry(f"images/{i}"),
                      "points": [list(GLTF_FROM_BLENDER @ p) for p in points],
                      "expected": _blender_pixels(obj, points)})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = (
        "import json, sys, numpy as np\n"
        "from backend.assets.viewset import _camera\n"
        "out = []\n"
        "for case in json.load(open(sys.argv[1])):\n"
        "    cam = _camera({}, case['frame'], 'frame', None)\n"
        "    px, depth = cam.project(np.array(case['points']))\n"
        "    out.append(px.tolist())\n"
        "print(json.dumps(out))\n")
    answer = subprocess.run([python, "-c", script, str(tmp_path / "cases.json")], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    for case, pixels in zip(cases, json.loads(answer.stdout.strip().splitlines()[-1])):
        for (u, v), (bu, bv) in zip(case["expected"], pixels):
            assert bu == pytest.approx(u, abs=1e-3) and bv == pytest.approx(v, abs=1e-3)


def test_images_of_another_size_keep_the_projection(clean_scene):
    obj = _camera("RT", SETUPS[2])  # 320x240, shifted
    view = cameras.view_camera(obj, bpy.context.scene)
    p = _points(obj, 1)[0]
    u, v, _ = view.project(GLTF_FROM_BLENDER @ p)
    # the same picture at twice the size: every pixel coordinate doubles
    u2, v2, _ = cameras.matching_image(view, 640, 480, "image").project(GLTF_FROM_BLENDER @ p)
    assert (u2, v2) == pytest.approx((2 * u, 2 * v))
    # a background image shown STRETCHed over the frame scales each axis by itself
    us, vs, _ = cameras.for_image(view, 100, 300, "STRETCH").project(GLTF_FROM_BLENDER @ p)
    assert (us, vs) == pytest.approx((u * 100 / 320, v * 300 / 240))
    # FIT: a square 120x120 image inside the 320x240 frame is 240 px tall, centred: x offset 40
    uf, vf, _ = cameras.for_image(view, 120, 120, "FIT").project(GLTF_FROM_BLENDER @ p)
    assert (uf, vf) == pytest.approx(((u - 40) / 2, v / 2))
    # CROP: the same image covers the frame's width (320 px), cut top and bottom: y offset -40
    uc, vc, _ = cameras.for_image(view, 120, 120, "CROP").project(GLTF_FROM_BLENDER @ p)
    assert (uc, vc) == pytest.approx((u * 120 / 320, (v + 40) * 120 / 320))
    with pytest.raises(CameraError, match=r"image photo.png is 500x500 but camera 'RT' renders 320x240"):
        cameras.matching_image(view, 500, 500, "image photo.png")


def test_blender_world_view_sets_move_to_the_gltf_frame(clean_scene):
    obj = _camera("RT", SETUPS[0])
    in_blender = cameras.view_camera(obj, bpy.context.scene, frame=Matrix.Identity(4))
    meta = {"frames": [in_blender.entry("a")]}
    moved = cameras.transforms_to_frame(meta)
    flat = [v for row in moved["frames"][0]["transform_matrix"] for v in row]
    assert flat == pytest.approx([v for row in cameras.view_camera(obj, bpy.context.scene).c2w for v in row], abs=1e-6)
    assert meta["frames"][0]["transform_matrix"] != moved["frames"][0]["transform_matrix"]  # input untouched


def test_cameras_that_cannot_make_a_view_set_are_named(clean_scene):
    obj = _camera("RT", SETUPS[0])
    obj.data.type = "ORTHO"
    with pytest.raises(CameraError, match="camera 'RT' is ortho"):
        cameras.view_camera(obj, bpy.context.scene)
    empty = bpy.data.objects.new("RT empty", None)
    try:
        with pytest.raises(CameraError, match="'RT empty' is not a camera"):
            cameras.view_camera(empty, bpy.context.scene)
    finally:
        bpy.data.objects.remove(empty)
