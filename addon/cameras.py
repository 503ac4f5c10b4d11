"""Blender cameras as view-set cameras (transforms.json, instant-ngp / nerfstudio convention).

A view-set camera is a camera-to-world matrix in the OpenGL camera convention (looks down -Z,
+Y up: the same as a Blender camera object's axes) plus pinhole intrinsics in pixels
(fl_x, fl_y, cx, cy, w, h; pixel (0, 0) is the top-left pixel, its centre at (0.5, 0.5)).
Cameras are written in the frame of the GLB Orbitex uploads (glTF, Y up), so the backend sees
cameras and mesh in one frame. Intrinsics follow Blender's own camera model: lens over the
sensor size along the fitted axis (sensor fit AUTO / HORIZONTAL / VERTICAL), lens shift in
units of the fitted frame side, render resolution with its percentage, and pixel aspect.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from mathutils import Matrix, Vector

# Blender world (Z up) -> glTF (Y up), as Blender's glTF exporter converts.
GLTF_FROM_BLENDER = Matrix(((1, 0, 0, 0), (0, 0, 1, 0), (0, -1, 0, 0), (0, 0, 0, 1)))
TRANSFORMS = "transforms.json"
FRAME_METHODS = ("STRETCH", "FIT", "CROP")


class CameraError(ValueError):
    """A camera (or its image) cannot become a view-set camera; the message names it."""


@dataclass(frozen=True)
class ViewCamera:
    name: str
    c2w: tuple[tuple[float, ...], ...]  # 4x4 rows, camera-to-world in the view set's frame
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    w: int
    h: int

    def project(self, point: Sequence[float]) -> tuple[float, float, float]:
        """A point in the view set's frame -> (u, v) pixels and depth along the view axis."""
        cam = Matrix(self.c2w).inverted() @ Vector(point)
        depth = -cam.z
        return self.fl_x * cam.x / depth + self.cx, -self.fl_y * cam.y / depth + self.cy, depth

    def entry(self, file_path: str) -> dict:
        """This camera as a transforms.json frame (intrinsics per frame, both ways of writing them)."""
        return {"file_path": file_path, "transform_matrix": [list(row) for row in self.c2w],
                "fl_x": self.fl_x, "fl_y": self.fl_y, "cx": self.cx, "cy": self.cy, "w": self.w, "h": self.h,
                "camera_angle_x": 2 * math.atan(self.w / (2 * self.fl_x)),
                "camera_angle_y": 2 * math.atan(self.h / (2 * self.fl_y))}


def fitted_axis(sensor_fit: str, width: float, height: float) -> str:
    """HORIZONTAL or VERTICAL: the frame side the sensor size applies to (AUTO: the longer one,
    `width` and `height` being the frame's displayed size, pixel aspect included)."""
    if sensor_fit == "AUTO":
        return "HORIZONTAL" if width >= height else "VERTICAL"
    if sensor_fit not in ("HORIZONTAL", "VERTICAL"):
        raise CameraError(f"unknown sensor fit {sensor_fit!r}")
    return sensor_fit


def intrinsics(lens: float, sensor_width: float, sensor_height: float, sensor_fit: str, shift_x: float,
               shift_y: float, res_x: int, res_y: int, pixel_aspect_x: float = 1.0,
               pixel_aspect_y: float = 1.0) -> tuple[float, float, float, float]:
    """(fl_x, fl_y, cx, cy) in pixels of a res_x x res_y render of a Blender perspective camera."""
    axis = fitted_axis(sensor_fit, res_x * pixel_aspect_x, res_y * pixel_aspect_y)
    sensor = sensor_height if sensor_fit == "VERTICAL" else sensor_width  # AUTO uses the width for either side
    aspect = pixel_aspect_y / pixel_aspect_x  # height of a pixel over its width
    # the fitted side in horizontal-pixel units (shift is a fraction of it, on both axes)
    side = res_x if axis == "HORIZONTAL" else res_y * aspect
    fl_x = lens / sensor * side
    fl_y = fl_x / aspect
    cx = res_x / 2 - shift_x * side
    cy = res_y / 2 + shift_y * side / aspect
    return fl_x, fl_y, cx, cy


def render_size(scene) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    r = scene.render
    return (max(1, int(r.resolution_x * r.resolution_percentage / 100)),
            max(1, int(r.resolution_y * r.resolution_percentage / 100)))


def rigid_c2w(matrix_world: Matrix) -> Matrix:
    """The camera's world matrix without scale (a scaled camera object sees the same picture)."""
    loc, rot, _scale = matrix_world.decompose()
    return Matrix.Translation(loc) @ rot.to_matrix().to_4x4()


def view_camera(obj, scene, frame: Matrix = GLTF_FROM_BLENDER) -> ViewCamera:  # type: ignore[no-untyped-def]
    """The camera object `obj` as it renders `scene`, its pose in `frame` (default: the glTF frame)."""
    if obj is None or obj.type != "CAMERA":
        raise CameraError(f"{getattr(obj, 'name', obj)!r} is not a camera")
    cam = obj.data
    if cam.type != "PERSP":
        raise CameraError(f"camera {obj.name!r} is {cam.type.lower()}: only perspective cameras make view sets")
    res_x, res_y = render_size(scene)
    r = scene.render
    fl_x, fl_y, cx, cy = intrinsics(cam.lens, cam.sensor_width, cam.sensor_height, cam.sensor_fit, cam.shift_x,
                                    cam.shift_y, res_x, res_y, r.pixel_aspect_x, r.pixel_aspect_y)
    c2w = frame @ rigid_c2w(obj.matrix_world)
    return ViewCamera(obj.name, tuple(tuple(float(v) for v in row) for row in c2w), fl_x, fl_y, cx, cy, res_x, res_y)


def for_image(camera: ViewCamera, width: int, height: int, frame_method: str = "STRETCH",
              pixel_aspect_x: float = 1.0, pixel_aspect_y: float = 1.0) -> ViewCamera:
    """The camera's intrinsics for an image of width x height shown in its frame the way Blender
    shows a camera background image: STRETCH fills the frame, FIT fits inside it (centred),
    CROP fills it and is cut at the sides. Image pixels are square; frame pixels have the
    render's pixel aspect."""
    if frame_method not in FRAME_METHODS:
        raise CameraError(f"{camera.name}: unknown frame method {frame_method!r}")
    disp_w, disp_h = camera.w * pixel_aspect_x, camera.h * pixel_aspect_y  # frame size in display units
    if frame_method == "STRETCH":
        sx, sy = disp_w / width, disp_h / height  # display units per image pixel
    else:
        s = (min if frame_method == "FIT" else max)(disp_w / width, disp_h / height)
        sx = sy = s
    off_x, off_y = (disp_w - width * sx) / 2, (disp_h - height * sy) / 2
    return replace(camera, fl_x=camera.fl_x * pixel_aspect_x / sx, fl_y=camera.fl_y * pixel_aspect_y / sy,
                   cx=(camera.cx * pixel_aspect_x - off_x) / sx, cy=(camera.cy * pixel_aspect_y - off_y) / sy,
                   w=width, h=height)


def matching_image(camera: ViewCamera, width: int, height: int, what: str) -> ViewCamera:
    """Intrinsics for an image rendered from this camera at another size (same aspect ratio)."""
    if abs(width / height - camera.w / camera.h) > 0.01 * camera.w / camera.h:
        raise CameraError(f"{what} is {width}x{height} but camera {camera.name!r} renders {camera.w}x{camera.h}: "
                          "their aspect ratios differ (set the render resolution to the image's)")
    sx, sy = width / camera.w, height / camera.h
    return replace(camera, fl_x=camera.fl_x * sx, fl_y=camera.fl_y * sy, cx=camera.cx * sx, cy=camera.cy * sy,
                   w=width, h=height)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "camera"


def write_view_set(folder: Path, views: Sequence[tuple[ViewCamera, Path]]) -> Path:
    """A view-set folder: the images copied to images/ and transforms.json beside them."""
    if not views:
        raise CameraError("no cameras with images to bake from")
    sizes = {(cam.w, cam.h) for cam, _ in views}
    if len(sizes) > 1:
        listed = ", ".join(f"{cam.name} {cam.w}x{cam.h}" for cam, _ in views)
        raise CameraError(f"the images differ in size ({listed}); a view set needs one image size")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for i, (cam, image) in enumerate(views):
        rel = f"images/{i:03d}_{safe_name(cam.name)}{image.suffix.lower()}"
        shutil.copyfile(image, folder / rel)
        frames.append(cam.entry(rel))
    path = folder / TRANSFORMS
    path.write_text(json.dumps({"camera_model": "OPENCV", "orbitex_source": "blender cameras", "frames": frames},
                               indent=2))
    return path


def zip_view_set(folder: Path, archive: Path, transforms: dict | None = None) -> Path:
    """Zip a view-set folder (hidden files left out); `transforms` replaces its transforms.json."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if path.is_dir() or any(part.startswith(".") for part in rel.parts):
                continue
            if transforms is not None and rel.as_posix() == TRANSFORMS:
                continue
            zf.write(path, rel.as_posix())
        if transforms is not None:
            zf.writestr(TRANSFORMS, json.dumps(transforms, indent=2))
    return archive


def read_transforms(folder: Path) -> dict:
    path = folder / TRANSFORMS
    if not path.is_file():
        raise CameraError(f"{folder}: no {TRANSFORMS} in the view-set folder")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CameraError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise CameraError(f"{path}: needs a non-empty 'frames' list")
    return meta


def transforms_to_frame(meta: dict, frame: Matrix = GLTF_FROM_BLENDER) -> dict:
    """transforms.json with every frame's camera moved by `frame` (Blender world -> glTF)."""
    out = dict(meta)
    out["frames"] = []
    for i, entry in enumerate(meta["frames"]):
        try:
            rows = [list(map(float, row)) for row in entry["transform_matrix"]]
            m = Matrix(rows if len(rows) == 4 else rows + [[0.0, 0.0, 0.0, 1.0]])
        except (KeyError, TypeError, ValueError) as exc:
            raise CameraError(f"{TRANSFORMS}: frame {i} has no usable transform_matrix ({exc})") from None
        moved = dict(entry)
        moved["transform_matrix"] = [list(row) for row in frame @ m]
        out["frames"].append(moved)
    return out
