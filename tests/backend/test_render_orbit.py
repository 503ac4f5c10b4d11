"""The render-orbit pipeline: view set, frames, videos, contact sheet, CLI."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from backend.assets.images import read_image
from backend.assets.viewset import read_viewset
from backend.errors import Cancelled, InputError
from backend.pipelines import parse_params
from backend.pipelines import render_orbit

ROOT = Path(__file__).resolve().parents[2]


def _mesh_file(tmp_path: Path) -> Path:
    """A box off the origin and not unit-sized, so the file frame differs from the normalized one."""
    import trimesh

    box = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    box.apply_translation([3.0, -1.0, 0.5])
    path = tmp_path / "box.glb"
    box.export(path)
    return path


def test_render_orbit_outputs(tmp_path: Path) -> None:
    mesh = _mesh_file(tmp_path)
    digest = hashlib.sha256(mesh.read_bytes()).hexdigest()
    reports: list[tuple[float, str]] = []
    out = tmp_path / "out"
    results = render_orbit.run({"mesh": mesh}, parse_params(render_orbit.Params, {"frames": 5, "size": 48}), out,
                               lambda f, s: reports.append((f, s)))
    assert hashlib.sha256(mesh.read_bytes()).hexdigest() == digest
    assert all(Path(p).is_file() for p in results.values())
    assert {"contact_sheet", "viewset", "transforms"} <= set(results)
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 10

    meta = json.loads((out / "transforms.json").read_text())
    names = [f["file_path"] for f in meta["frames"]]
    assert len(names) == 9 and names[0] == "normal/h_0000.png" and names[5] == "normal/v_0001.png"
    assert meta["orbitex_render_only"] == "normal"
    for frame in meta["frames"]:  # every path the file names exists, as nerfstudio-style loaders expect
        assert all((out / frame[key]).is_file() for key in ("file_path", "mask_path", "position_path", "normal_path"))
    assert meta["orbitex_orbits"]["vertical"][0] == "h_0000" and len(meta["orbitex_orbits"]["vertical"]) == 5
    center, scale = np.array(meta["orbitex_normalization"]["center"]), meta["orbitex_normalization"]["scale"]
    np.testing.assert_allclose(center, [3.0, -1.0, 0.5], atol=1e-6)
    assert scale == pytest.approx(0.5)

    vs = read_viewset(out)
    assert vs.images is None and vs.masks.shape == (9, 48, 48) and vs.masks.any(axis=(1, 2)).all()
    for cam in vs.cameras:  # cameras in the file's frame: 1.5 normalized units = 3 file units away
        assert np.linalg.norm(cam.position - center) == pytest.approx(3.0, abs=1e-6)

    # position pixels decode to points that the file-frame camera projects back onto those pixels
    frame = meta["frames"][2]
    position = read_image(out / frame["position_path"])
    mask = read_image(out / frame["mask_path"])[..., 0] > 0.5
    normal = read_image(out / frame["normal_path"])
    assert not position[~mask].any() and not normal[~mask].any()  # black background
    ys, xs = np.nonzero(mask)
    pick = np.linspace(0, len(ys) - 1, 50).astype(int)
    points = (position[ys[pick], xs[pick]] - 0.5) / scale + center
    pixels, _ = vs.cameras[2].project(points.astype(np.float64))
    assert np.abs(pixels - np.stack([xs[pick] + 0.5, ys[pick] + 0.5], 1)).max() < 1.0
    n = normal[ys[pick], xs[pick]] * 2 - 1
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=0.02)
    towards_camera = ((vs.cameras[2].position - points) * n).sum(1)
    assert (towards_camera > 0).mean() > 0.95  # visible surfaces face the camera

    import imageio_ffmpeg

    for name in ("horizontal_position", "horizontal_normal", "vertical_position", "vertical_normal"):
        count, _ = imageio_ffmpeg.count_frames_and_secs(str(results[name]))
        assert count == 5
    sheet = read_image(results["contact_sheet"])
    assert sheet.shape[0] > 4 * 128 and sheet.shape[1] > 5 * 128
    with zipfile.ZipFile(results["viewset"]) as archive:
        members = set(archive.namelist())
    assert {"transforms.json", "position/h_0000.png", "masks/v_0004.png", "vertical_normal.mp4"} <= members


def test_frame0_matches_in_both_orbit_videos(tmp_path: Path) -> None:
    import imageio_ffmpeg

    out = tmp_path / "out"
    results = render_orbit.run({"mesh": _mesh_file(tmp_path)}, render_orbit.Params(frames=3, size=32), out,
                               lambda f, s: None)
    first = []
    for name in ("horizontal_normal", "vertical_normal"):
        reader = imageio_ffmpeg.read_frames(str(results[name]))
        next(reader)
        first.append(np.frombuffer(next(reader), np.uint8))
    np.testing.assert_array_equal(first[0], first[1])


def test_params_and_output_folder_checks(tmp_path: Path) -> None:
    for bad in ({"frames": 0}, {"size": 8}, {"rasterizer": "vulkan"}, {"frames": "many"}):
        with pytest.raises(InputError):
            parse_params(render_orbit.Params, bad)
    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    (user_dir / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        render_orbit.run({"mesh": _mesh_file(tmp_path)}, render_orbit.Params(frames=2, size=16), user_dir,
                         lambda f, s: None)
    assert (user_dir / "notes.txt").read_text() == "keep me" and len(list(user_dir.iterdir())) == 1


def test_cancel_from_progress_stops_the_run(tmp_path: Path) -> None:
    calls = []

    def progress(fraction: float, stage: str) -> None:
        calls.append(stage)
        if stage.startswith("rasterizing"):
            raise Cancelled("cancelled by request")

    with pytest.raises(Cancelled):
        render_orbit.run({"mesh": _mesh_file(tmp_path)}, render_orbit.Params(frames=30, size=32), tmp_path / "o",
                         progress)
    assert not (tmp_path / "o" / "transforms.json").exists()


def test_cli(tmp_path: Path) -> None:
    mesh = _mesh_file(tmp_path)
    out = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "backend", "render-orbit", str(mesh), "--out", str(out),
                           "--frames", "3", "--size", "32"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert Path(printed["contact_sheet"]).is_file() and (out / "transforms.json").is_file()
    again = subprocess.run([sys.executable, "-m", "backend", "render-orbit", str(mesh), "--out", str(tmp_path),
                            "--frames", "3", "--size", "32"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 2 and "not empty" in again.stderr
