"""View sets (transforms.json + images) and the image/video helpers under them."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from backend.assets.images import read_image, write_mp4, write_png
from backend.assets.viewset import read_viewset, write_viewset
from backend.errors import InputError
from backend.assets.cameras import Camera, look_at, orbit

from geometry_helpers import png_with_header_size


def _images(n: int, h: int, w: int, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, size=(n, h, w, channels)) / 255.0).astype(np.float32)


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_round_trip(tmp_path: Path) -> None:
    cams = orbit("horizontal", 4, 24)
    images = _images(4, 24, 24)
    masks = images[..., 0] > 0.5
    position = _images(4, 24, 24)
    path = write_viewset(tmp_path / "set", cams, images, masks, extra={"position": position},
                         metadata={"note": "test"})
    meta = json.loads(path.read_text())
    assert meta["fl_x"] == pytest.approx(cams[0].fx) and meta["w"] == 24 and "camera_angle_x" in meta
    assert meta["frames"][2]["position_path"] == "position/0002.png"
    vs = read_viewset(tmp_path / "set")
    assert len(vs) == 4 and vs.names == [f"images/{i:04d}.png" for i in range(4)]
    for got, want in zip(vs.cameras, cams):
        np.testing.assert_allclose(got.c2w, want.c2w, atol=1e-12)
        assert (got.fx, got.fy, got.cx, got.cy, got.width, got.height) == pytest.approx(
            (want.fx, want.fy, want.cx, want.cy, want.width, want.height))
    np.testing.assert_allclose(vs.images, images, atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(vs.masks, masks)
    assert vs.metadata["note"] == "test"
    assert (tmp_path / "set" / "position" / "0003.png").is_file()


def test_alpha_becomes_mask_and_blender_style_sets(tmp_path: Path) -> None:
    """camera_angle_x only, file_path without extension, no w/h, per-frame RGBA images."""
    folder = tmp_path / "nerf"
    rgba = _images(2, 20, 30, channels=4)
    rgba[..., 3] = 0.0
    rgba[:, 5:15, 10:20, 3] = 1.0
    frames = []
    for i in range(2):
        write_png(folder / "train" / f"r_{i}.png", rgba[i])
        c2w = look_at(np.array([0, 0.5 * i, 3.0]), np.zeros(3), np.array([0, 1.0, 0]))
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": c2w.tolist()})
    (folder / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    before = _digests(folder)
    vs = read_viewset(folder)
    assert vs.images.shape == (2, 20, 30, 3) and vs.masks.shape == (2, 20, 30)
    assert vs.masks.sum() == 2 * 100 and vs.masks[:, 5:15, 10:20].all()
    cam = vs.cameras[0]
    assert (cam.width, cam.height, cam.cx, cam.cy) == (30, 20, 15, 10)
    assert cam.fx == pytest.approx(15 / math.tan(0.345)) and cam.fy == cam.fx
    assert _digests(folder) == before  # never modifies the input


def test_per_frame_intrinsics_and_max_views(tmp_path: Path) -> None:
    cams = [Camera(look_at(np.array([0, 0, 2.0 + i]), np.zeros(3), np.array([0, 1.0, 0])), 20 + i, 21 + i,
                   8, 6, 16, 12) for i in range(6)]
    write_viewset(tmp_path, cams, _images(6, 12, 16))
    meta = json.loads((tmp_path / "transforms.json").read_text())
    assert "fl_x" not in meta and meta["frames"][3]["fl_x"] == 23
    vs = read_viewset(tmp_path, max_views=3)
    assert [c.fx for c in vs.cameras] == [20, 22, 25]  # evenly spread: frames 0, 2, 5
    assert vs.images.shape[0] == 3


def test_render_only_set(tmp_path: Path) -> None:
    cams = orbit("vertical", 3, 16)
    write_viewset(tmp_path, cams, masks=np.ones((3, 16, 16), bool), extra={"normal": _images(3, 16, 16)})
    vs = read_viewset(tmp_path)
    assert vs.images is None and vs.masks.all() and len(vs.names) == 3
    assert vs.names == [f"normal/{i:04d}.png" for i in range(3)] and all((tmp_path / n).is_file() for n in vs.names)


def _write_good(folder: Path) -> Path:
    write_viewset(folder, orbit("horizontal", 2, 16), _images(2, 16, 16))
    return folder / "transforms.json"


@pytest.mark.parametrize("breakage, expected", [
    ("no transforms", "transforms.json"),
    ("bad json", "transforms.json"),
    ("zero frames", "zero frames"),
    ("missing image", "frame 1"),
    ("wrong size", "frame 0"),
    ("nan camera", "frame 1"),
    ("no focal", "focal"),
])
def test_bad_view_sets(tmp_path: Path, breakage: str, expected: str) -> None:
    transforms = _write_good(tmp_path)
    meta = json.loads(transforms.read_text())
    if breakage == "no transforms":
        transforms.unlink()
    elif breakage == "bad json":
        transforms.write_text("{frames: [")
    elif breakage == "zero frames":
        meta["frames"] = []
    elif breakage == "missing image":
        (tmp_path / "images" / "0001.png").unlink()
    elif breakage == "wrong size":
        write_png(tmp_path / "images" / "0000.png", np.zeros((8, 16, 3)))
    elif breakage == "nan camera":
        meta["frames"][1]["transform_matrix"][0][3] = float("nan")
    elif breakage == "no focal":
        for key in ("fl_x", "fl_y", "camera_angle_x", "camera_angle_y"):
            meta.pop(key)
    if breakage in ("zero frames", "nan camera", "no focal"):
        transforms.write_text(json.dumps(meta))  # (Python writes NaN as JSON's common extension)
    before = _digests(tmp_path)
    with pytest.raises(InputError) as info:
        read_viewset(tmp_path)
    assert expected in str(info.value)
    assert _digests(tmp_path) == before


def test_read_image_formats_and_errors(tmp_path: Path) -> None:
    grey16 = (np.arange(12 * 10).reshape(12, 10) * 500).astype(np.uint16)
    import cv2

    cv2.imwrite(str(tmp_path / "grey16.png"), grey16)
    img = read_image(tmp_path / "grey16.png")
    assert img.shape == (12, 10, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img[..., 1], grey16 / 65535.0, atol=1e-7)
    rgb = _images(1, 9, 7)[0]
    write_png(tmp_path / "rgb16.png", rgb, bits=16)
    np.testing.assert_allclose(read_image(tmp_path / "rgb16.png"), rgb, atol=1e-5)
    write_png(tmp_path / "one.png", np.zeros((1, 1, 3)))
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"nonsense" * 20)
    (tmp_path / "empty.jpg").write_bytes(b"")
    png_with_header_size(tmp_path / "huge.png", 9000, 9000)
    for name, words in (("one.png", "1x1"), ("corrupt.png", "corrupt.png"), ("empty.jpg", "empty.jpg"),
                        ("huge.png", "64 Mpx"), ("missing.png", "no such")):
        with pytest.raises(InputError, match=words):
            read_image(tmp_path / name)


def test_write_mp4_h264_even_size(tmp_path: Path) -> None:
    import imageio_ffmpeg

    frames = (np.random.default_rng(1).integers(0, 256, size=(5, 17, 33, 3))).astype(np.uint8)
    path = write_mp4(frames, tmp_path / "clip.mp4", fps=10)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    count = sum(1 for _ in reader)
    assert meta["size"] == (34, 18) and count == 5 and meta["fps"] == pytest.approx(10)
    assert "h264" in meta.get("codec", "")
