"""View sets: posed images in a folder with `transforms.json` (instant-ngp / nerfstudio convention).

transforms.json holds, per frame, a camera-to-world `transform_matrix` (4x4 or 3x4, OpenGL/Blender
camera: looks down -Z, +Y up) and a `file_path` relative to the folder, with or without extension;
intrinsics are `fl_x fl_y cx cy w h` (top level or per frame) or `camera_angle_x` (and
`camera_angle_y`), pixel (0, 0) being the top-left corner. Optional per-frame `mask_path`, and
Orbitex's `position_path` / `normal_path` (G-buffer renders). Orbitex writes the intrinsics both
ways so instant-ngp, nerfstudio and Blender NeRF tools read its sets. A set written with no
images (a render-only set, e.g. from render-orbit) is marked `"orbitex_render_only": "<set>"`; its
`file_path`s point at that set's frames (e.g. `normal/NAME.png`), so every path in the file exists
and nerfstudio-style loaders open it (an earlier `true` is read the same way).

Layout written: images/NAME.png, masks/NAME.png, and one folder per extra image set
(position/NAME.png, normal/NAME.png, ...), all beside transforms.json.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from .cameras import Camera
from .images import read_image, write_png

TRANSFORMS = "transforms.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".webp", ".tif", ".tiff", ".bmp")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")
# Whether paths in transforms.json may lead outside the view set's folder: never in the service;
# the CLI allows it on request (bake --allow-outside-paths) for a user's own files.
_OUTSIDE_PATHS_ALLOWED = contextvars.ContextVar("orbitex_outside_paths_allowed", default=False)


@contextlib.contextmanager
def outside_paths_allowed():  # type: ignore[no-untyped-def]
    """Within this block, read_viewset follows paths that leave the view set's folder."""
    token = _OUTSIDE_PATHS_ALLOWED.set(True)
    try:
        yield
    finally:
        _OUTSIDE_PATHS_ALLOWED.reset(token)


@dataclass(frozen=True)
class ViewSet:
    cameras: list[Camera]
    images: np.ndarray | None  # (N, H, W, 3) float32 in [0, 1], or None for a render-only set
    masks: np.ndarray | None  # (N, H, W) bool, or None when no frame has a mask or alpha
    names: list[str]  # per-frame file_path as in transforms.json
    metadata: dict[str, Any] = field(default_factory=dict)  # other top-level keys of transforms.json

    def __len__(self) -> int:
        return len(self.cameras)


def read_viewset(folder: str | Path, max_views: int | None = None) -> ViewSet:
    """Read a view set folder. `max_views` keeps that many frames, evenly spread over the set.
    Raises InputError naming transforms.json, the frame or the file for anything unusable."""
    folder = Path(folder)
    meta = _load_transforms(folder / TRANSFORMS)
    check_paths(folder, meta)
    frames = meta["frames"]
    if max_views is not None and 0 < max_views < len(frames):
        frames = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, max_views).round()]
    render_only = bool(meta.get("orbitex_render_only", False))
    cameras, images, masks, names = [], [], [], []
    for index, frame in enumerate(frames):
        label = _frame_label(frame, index)
        if not isinstance(frame, dict):
            raise InputError(f"{TRANSFORMS}: frame {index} is not an object")
        name = frame.get("file_path")
        if not isinstance(name, str) or not name:
            raise InputError(f"{TRANSFORMS}: {label} has no file_path")
        names.append(name)
        image = None if render_only else read_image(_resolve_image(folder, name, label, f"frame {index} file_path"))
        cameras.append(_camera(meta, frame, label, image))
        mask = None
        if isinstance(frame.get("mask_path"), str):
            mask_image = read_image(_resolve_image(folder, frame["mask_path"], f"{label} mask",
                                                   f"frame {index} mask_path"))
            _check_shape(mask_image, cameras[-1], f"{label} mask {frame['mask_path']}")
            mask = _mask_from_image(mask_image)
        if image is not None:
            if image.shape[2] == 4:
                mask = image[..., 3] > 0.5 if mask is None else mask
                image = image[..., :3]
            images.append(image)
        masks.append(mask)
    if not cameras:
        raise InputError(f"{TRANSFORMS} in {folder}: no frames")
    if len({(c.width, c.height) for c in cameras}) != 1:
        raise InputError(f"{TRANSFORMS} in {folder}: frames of different image sizes are not supported")
    mask_array = None
    if any(m is not None for m in masks):
        full = np.ones((cameras[0].height, cameras[0].width), dtype=bool)
        mask_array = np.stack([full if m is None else m for m in masks])
    extra = {k: v for k, v in meta.items() if k != "frames" and k not in _INTRINSIC_KEYS}
    return ViewSet(cameras, np.stack(images) if images else None, mask_array, names, extra)


def read_viewset_input(path: str | Path, scratch: str | Path) -> ViewSet:
    """A view set given as a folder or as a .zip: the zip is unpacked within the archive limits into a
    temporary folder under `scratch` (in the service: inside the job's folder), removed once read."""
    import tempfile

    from .archive import extract_zip

    path = Path(path)
    if path.is_dir():
        return read_viewset(path)
    if not (path.is_file() and path.suffix.lower() == ".zip"):
        raise InputError(f"{path}: not a view-set folder or .zip")
    Path(scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".views_", dir=scratch) as tmp:
        extract_zip(path, Path(tmp))
        found = sorted(Path(tmp).rglob(TRANSFORMS), key=lambda p: len(p.parts))
        if not found:
            raise InputError(f"{path.name}: the archive holds no {TRANSFORMS}")
        return read_viewset(found[0].parent)


def _mask_from_image(image: np.ndarray) -> np.ndarray:
    """A mask file is grey (white = object) or carries the mask in its alpha channel."""
    if image.shape[2] == 4 and image[..., 3].min() < 1.0:
        return image[..., 3] > 0.5
    return image[..., 0] > 0.5


def _load_transforms(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: no {TRANSFORMS} in the view set folder")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path.name}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise InputError(f"{path.name}: needs an object with a 'frames' list")
    if not meta["frames"]:
        raise InputError(f"{path.name}: the view set has zero frames")
    return meta


def _frame_label(frame: Any, index: int) -> str:
    name = frame.get("file_path") if isinstance(frame, dict) else None
    return f"frame {index}" + (f" ({name})" if isinstance(name, str) else "")


def check_paths(folder: Path, meta: dict[str, Any]) -> None:
    """Every path in transforms.json (file_path, mask_path, any other *_path, top level or per
    frame) must stay inside `folder` once symlinks are resolved. The error names the frame and the
    key only: nothing about where the path leads or whether something is there."""
    if _OUTSIDE_PATHS_ALLOWED.get():
        return
    places = [("the top level", meta)] + [(f"frame {i}", f) for i, f in enumerate(meta.get("frames", []))
                                           if isinstance(f, dict)]
    for where, entry in places:
        for key, value in entry.items():
            if key.endswith("_path") and isinstance(value, str):
                _inside(folder, folder / value, f"{where} {key}")


def _inside(folder: Path, path: Path, what: str) -> Path:
    """`path`, refused unless it resolves inside folder (or outside paths are allowed)."""
    if _OUTSIDE_PATHS_ALLOWED.get():
        return path
    try:
        inside = path.resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError, RuntimeError):  # NUL bytes, symlink loops
        inside = False
    if not inside:
        raise InputError(f"{TRANSFORMS}: {what} leads outside the view set folder; paths in {TRANSFORMS}"
                         " must be relative and stay inside its folder")
    return path


def _resolve_image(folder: Path, name: str, label: str, what: str) -> Path:
    """A frame's image file: the path as given, else with a known image extension added. Every
    candidate is checked to stay inside the folder before any is looked for (no existence leaks)."""
    path = _inside(folder, folder / name, what)
    candidates = [path] + [path.with_name(path.name + s) for suffix in IMAGE_SUFFIXES for s in (suffix, suffix.upper())]
    for candidate in candidates:
        _inside(folder, candidate, what)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"{TRANSFORMS}: image of {label} not found ({name})")


def _number(value: Any, key: str, label: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{TRANSFORMS}: {label}: {key} is not a number ({value!r})") from None
    if not math.isfinite(number):
        raise InputError(f"{TRANSFORMS}: {label}: {key} is not finite")
    return number


def _camera(meta: dict[str, Any], frame: dict[str, Any], label: str, image: np.ndarray | None) -> Camera:
    def get(key: str) -> float | None:
        value = frame.get(key, meta.get(key))
        return None if value is None else _number(value, key, label)

    try:
        c2w = np.asarray(frame.get("transform_matrix"), dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{TRANSFORMS}: {label}: transform_matrix is not a matrix of numbers") from None
    if c2w.shape == (3, 4):
        c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
    if c2w.shape != (4, 4):
        raise InputError(f"{TRANSFORMS}: {label}: transform_matrix must be 4x4 (or 3x4), got shape {c2w.shape}")
    if not np.isfinite(c2w).all():
        raise InputError(f"{TRANSFORMS}: {label}: transform_matrix contains NaN or infinity")
    w, h = get("w"), get("h")
    if w is None or h is None:
        if image is None:
            raise InputError(f"{TRANSFORMS}: {label}: no image size (w, h) given and no image to take it from")
        h, w = image.shape[:2]
    width, height = int(round(w)), int(round(h))
    fx, fy = get("fl_x"), get("fl_y")
    angle_x, angle_y = get("camera_angle_x"), get("camera_angle_y")
    if fx is None and angle_x is not None:
        fx = 0.5 * width / math.tan(angle_x / 2)
    if fy is None and angle_y is not None:
        fy = 0.5 * height / math.tan(angle_y / 2)
    fx, fy = (fy if fx is None else fx), (fx if fy is None else fy)
    if fx is None or fy is None:
        raise InputError(f"{TRANSFORMS}: {label}: no focal length (fl_x/fl_y or camera_angle_x)")
    cx, cy = get("cx"), get("cy")
    try:
        camera = Camera(c2w, fx, fy, width / 2 if cx is None else cx, height / 2 if cy is None else cy, width, height)
    except InputError as exc:
        raise InputError(f"{TRANSFORMS}: {label}: {exc}") from None
    if image is not None:
        _check_shape(image, camera, f"{label} image")
    return camera


def _check_shape(image: np.ndarray, camera: Camera, what: str) -> None:
    if image.shape[:2] != (camera.height, camera.width):
        raise InputError(f"{what} is {image.shape[1]}x{image.shape[0]} but the camera says "
                         f"{camera.width}x{camera.height}")


def frame_names(count: int) -> list[str]:
    return [f"{i:04d}" for i in range(count)]


def camera_entries(cameras: Sequence[Camera]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Intrinsics for transforms.json: top-level when all cameras share them, else per frame;
    plus each frame's transform_matrix."""
    def intrinsics(c: Camera) -> dict[str, Any]:
        return {"fl_x": c.fx, "fl_y": c.fy, "cx": c.cx, "cy": c.cy, "w": c.width, "h": c.height,
                "camera_angle_x": 2 * math.atan(c.width / (2 * c.fx)),
                "camera_angle_y": 2 * math.atan(c.height / (2 * c.fy))}

    shared = len({tuple(intrinsics(c).values()) for c in cameras}) == 1
    top = {"camera_model": "OPENCV", **(intrinsics(cameras[0]) if shared else {})}
    frames = [{"transform_matrix": np.asarray(c.c2w, dtype=np.float64).tolist(), **({} if shared else intrinsics(c))}
              for c in cameras]
    return top, frames


def write_transforms(folder: str | Path, cameras: Sequence[Camera], file_paths: Sequence[str],
                     frame_paths: dict[str, Sequence[str]] | None = None, metadata: dict[str, Any] | None = None,
                     render_only: str | None = None) -> Path:
    """Write transforms.json. `frame_paths` maps a key such as 'mask_path' or 'position_path' to
    one relative path per frame; `metadata` adds top-level keys. `render_only` names the image set
    the `file_path`s point at when the set has no RGB images."""
    if len(file_paths) != len(cameras):
        raise ValueError("one file_path per camera")
    top, frames = camera_entries(cameras)
    for i, frame in enumerate(frames):
        frame["file_path"] = file_paths[i]
        for key, paths in (frame_paths or {}).items():
            frame[key] = paths[i]
    doc = {**top, **(metadata or {}), **({"orbitex_render_only": render_only} if render_only else {}), "frames": frames}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TRANSFORMS
    path.write_text(json.dumps(doc, indent=2, default=_json_default), encoding="utf-8")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_viewset(folder: str | Path, cameras: Sequence[Camera], images: np.ndarray | None = None,
                  masks: np.ndarray | None = None, extra: dict[str, np.ndarray] | None = None,
                  names: Sequence[str] | None = None, metadata: dict[str, Any] | None = None) -> Path:
    """Write a view set: images/NAME.png (RGB, float in [0, 1] or uint8), masks/NAME.png, one
    folder per `extra` image set (e.g. {'position': (N, H, W, 3)} -> position/NAME.png and
    'position_path'), and transforms.json. `names` are file stems (default 0000, 0001, ...).
    Returns the path of transforms.json."""
    folder = Path(folder)
    cameras = list(cameras)
    if not cameras:
        raise InputError("a view set needs at least one camera")
    names = list(names) if names is not None else frame_names(len(cameras))
    if len(names) != len(cameras) or len(set(names)) != len(names):
        raise ValueError("one unique name per camera")
    sets: dict[str, np.ndarray] = {}
    if images is not None:
        sets["images"] = np.asarray(images)
    if masks is not None:
        sets["masks"] = np.asarray(masks)
    for key, value in (extra or {}).items():
        if key in ("images", "masks") or not key.isidentifier():
            raise ValueError(f"bad extra image set name {key!r}")
        sets[key] = np.asarray(value)
    for key, array in sets.items():
        if len(array) != len(cameras):
            raise ValueError(f"{key}: {len(array)} images for {len(cameras)} cameras")
        for cam, image in zip(cameras, array):
            if image.shape[:2] != (cam.height, cam.width):
                raise ValueError(f"{key}: image {image.shape[1]}x{image.shape[0]} for a {cam.width}x{cam.height} camera")
    frame_paths: dict[str, list[str]] = {}
    for key, array in sets.items():
        paths = [f"{key}/{name}.png" for name in names]
        for rel, image in zip(paths, array):
            write_png(folder / rel, image)
        if key != "images":
            frame_paths["mask_path" if key == "masks" else f"{key}_path"] = paths
    # Without RGB images, file_path points at frames that exist (the first extra set, else the masks).
    shown = "images" if images is not None else next(iter(extra or {}), "masks" if masks is not None else None)
    if shown is None:
        raise InputError("a view set needs images, masks or another image set")
    file_paths = [f"{shown}/{name}.png" for name in names]
    return write_transforms(folder, cameras, file_paths, frame_paths, metadata,
                            render_only=None if images is not None else shown)
