"""Refine (TIRE) on static assets: seen pixels kept, unseen repainted, bad input refused before work."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from backend.errors import InputError, OrbitexError
from backend.pipelines import parse_params
from backend.pipelines import refine
from backend.progress import no_progress
from refine_helpers import can_glb, can_ply, subject_png

SMALL = {"frames": 8, "size": 48, "source_view": "0", "bake": {"voxel_res": 48}}


def _run(tmp_path: Path, asset: Path, out: str, **params):  # type: ignore[no-untyped-def]
    subject = subject_png(tmp_path / "subject.png")
    return refine.run({"asset": asset, "subject": subject}, parse_params(refine.Params, {**SMALL, **params}),
                      tmp_path / out, no_progress)


def test_mesh_refine_keeps_what_the_source_sees(tmp_path: Path) -> None:
    from backend.assets.material import load_textured_mesh
    from backend.assets.mesh import normalize
    from backend.pipelines.refine_frames import refine_cameras, render_mesh
    from backend.pipelines.refine_mesh import source_seen_texels
    from backend.assets.cameras import orbit
    from backend.track.geometry import DEPTH_TOLERANCE
    from backend.track.masks import dilate

    asset = can_glb(tmp_path / "can.glb")
    results = _run(tmp_path, asset, "refined.glb")
    before_mesh, before_tex = load_textured_mesh(asset)
    after_mesh, after_tex = load_textured_mesh(results["glb"])
    assert after_mesh.num_vertices == before_mesh.num_vertices and np.array_equal(after_mesh.faces, before_mesh.faces)
    mesh, _ = normalize(before_mesh)
    cams, _ = refine_cameras(orbit("horizontal", 8, 8)[0].c2w, 8, 48)
    images, masks, views = render_mesh(mesh, before_tex, cams)
    seen = source_seen_texels(mesh, 64, views[0], DEPTH_TOLERANCE)
    assert seen.mean() > 0.1
    assert np.abs(after_tex[seen] - before_tex[seen]).max() <= 0.5 / 255  # texels the source sees: the input's own
    assert np.abs(after_tex[~seen] - before_tex[~seen]).mean() > 0.01  # the rest was repainted
    again, _, _ = render_mesh(mesh, after_tex, cams[:1])
    inner = masks[0] & ~dilate(~masks[0], 2)
    assert np.abs(again[0][inner] - images[0][inner]).max() <= 1 / 255  # the source view looks the same
    assert Path(results["frames"]).is_file() and Path(results["report"]).is_file()


def test_gaussian_refine_refits_and_keeps_source_visible(tmp_path: Path) -> None:
    from backend.splats.ply import read_ply

    asset = can_ply(tmp_path / "can.ply")
    results = _run(tmp_path, asset, "refined.ply", iterations=8, size=40)
    before, after = read_ply(asset), read_ply(results["gaussians"])
    assert len(after) == len(before)
    same = (after.means - before.means).abs().amax(1) < 1e-5
    assert 0.1 < float(same.float().mean()) < 0.95  # the source-visible ones kept, the others refit
    assert (after.sh[~same] - before.sh[~same]).abs().amax() > 0


def test_opencv_inpainter_keeps_unmasked_pixels_exactly() -> None:
    from backend.models.inpaint import load_inpainter

    rng = np.random.default_rng(0)
    image = rng.random((40, 50, 3)).astype(np.float32)
    mask = np.zeros((40, 50), bool)
    mask[10:25, 15:30] = True
    for method in ("shiftmap", "telea"):
        out = load_inpainter("opencv", method=method).inpaint(image, mask, "")
        assert out.dtype == np.float32 and np.array_equal(out[~mask], image[~mask])
        assert np.abs(out[mask] - image[mask]).mean() > 0.05


def test_sd_inpaint_and_cotracker_say_clearly_what_is_missing(tmp_path: Path) -> None:
    import importlib.util

    asset = can_glb(tmp_path / "can.glb")
    if importlib.util.find_spec("backend.models.sd_inpaint") is None:
        with pytest.raises(OrbitexError, match="sd-inpaint"):
            _run(tmp_path, asset, "a.glb", inpainter="sd-inpaint")
    else:  # the adapter is in the tree: without weights it names them before any work
        from backend.models import registry

        if registry.locate("sd-inpaint") is None:
            with pytest.raises(OrbitexError, match="sd-inpaint"):
                _run(tmp_path, asset, "a.glb", inpainter="sd-inpaint")
    if importlib.util.find_spec("backend.models.cotracker") is None:
        with pytest.raises(OrbitexError, match="CoTracker"):
            _run(tmp_path, asset, "b.glb", tracker="cotracker")
    assert not (tmp_path / "a_files").exists() and not (tmp_path / "b_files").exists()  # failed before any work


def test_bad_input_is_refused_before_work(tmp_path: Path) -> None:
    from PIL import Image

    asset = can_glb(tmp_path / "can.glb")
    good = subject_png(tmp_path / "good.png")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    flat = tmp_path / "flat.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(flat)
    params = parse_params(refine.Params, SMALL)
    for bad, message in ((tiny, "1x1"), (empty, "empty"), (broken, "broken.png"), (flat, "flat colour")):
        with pytest.raises(InputError, match=message):
            refine.run({"asset": asset, "subject": good, "subject_1": bad}, params, tmp_path / "x.glb", no_progress)
    with pytest.raises(InputError, match="at least one subject"):
        refine.run({"asset": asset}, params, tmp_path / "x.glb", no_progress)
    import trimesh

    white = tmp_path / "white.glb"
    trimesh.creation.box().export(white)
    with pytest.raises(InputError, match="texture it first"):
        refine.run({"asset": white, "subject": good}, params, tmp_path / "x.glb", no_progress)
    with pytest.raises(InputError, match="anchors"):
        parse_params(refine.Params, {"anchors": [90, 20, 180]})
    with pytest.raises(InputError, match="refines into"):
        refine.run({"asset": asset, "subject": good}, params, tmp_path / "x.ply", no_progress)
    away = tmp_path / "away.json"
    away.write_text('{"frames": [{"transform_matrix": [[1,0,0,0],[0,1,0,0],[0,0,1,-5],[0,0,0,1]]}]}')
    with pytest.raises(InputError, match="sees nothing"):
        refine.run({"asset": asset, "subject": good, "cameras": away}, params, tmp_path / "x.glb", no_progress)
    assert not (tmp_path / "x.glb").exists()


def test_cli_flags_map_to_roles_and_params() -> None:
    parser = argparse.ArgumentParser()
    refine.add_arguments(parser)
    args = parser.parse_args(["a.glb", "--subject", "s0.png", "s1.png", "s2.png", "--out", "o.glb",
                              "--source-view", "cams/transforms.json", "--anchors", "30,180", "--no-train-lora"])
    assert (args.subject, args.subject_1, args.subject_2, args.cameras) == ("s0.png", "s1.png", "s2.png",
                                                                           "cams/transforms.json")
    assert args.anchors == [30.0, 180.0] and args.train_lora is False
    args = parser.parse_args(["a.glb", "--subject", "s.png", "--out", "o", "--source-view", "5"])
    assert args.source_view == "5" and getattr(args, "cameras", None) is None


def test_bake_options_nest_and_keep_refines_defaults() -> None:
    from backend.cli import params_from_flags

    parser = argparse.ArgumentParser()
    refine.add_arguments(parser)
    args = parser.parse_args(["a.glb", "--subject", "s.png", "--out", "o.glb", "--voxel-res", "64",
                              "--texture-size", "512", "--consistency", "mv-sd", "--consistency-strength", "0.1"])
    flags = params_from_flags(refine.Params, vars(args))
    assert flags["bake"] == {"voxel_res": 64, "texture_size": 512}
    params = parse_params(refine.Params, flags)
    # keys left out of `bake` keep refine's rebake defaults, not BakeParams' (align off, source locked)
    assert (params.bake.voxel_res, params.bake.texture_size, params.bake.align, params.bake.lock_reference) == (
        64, 512, False, True)
    assert params.consistency == "mv-sd" and params.consistency_strength == 0.1
    assert parse_params(refine.Params, {}).bake.voxel_res == 128
    assert params.rebake(64).texture_size == 64 and params.rebake(4096).texture_size == 512  # capped, never above
    with pytest.raises(InputError, match="lock_reference"):
        parse_params(refine.Params, {"bake": {"lock_reference": False}})
    with pytest.raises(InputError, match="bake.voxel_res"):
        parse_params(refine.Params, {"bake": {"voxel_res": "many"}})
    with pytest.raises(InputError, match="unknown parameter.*voxel_res"):
        parse_params(refine.Params, {"voxel_res": 64})  # no longer a top-level field
    with pytest.raises(InputError, match="consistency"):
        parse_params(refine.Params, {"consistency": "mv-flux"})


def test_flow_tracker_runs_the_pipeline(tmp_path: Path) -> None:
    import json

    asset = can_glb(tmp_path / "can.glb")
    results = _run(tmp_path, asset, "flow.glb", tracker="flow")
    report = json.loads(Path(results["report"]).read_text())
    assert report["tracker"] == "flow"
    frames = report["progressive"]["frames"]
    assert any(f["warped_from"] for f in frames.values())  # flow tracks carried colours from finished frames
    assert max(f["unseen_fraction"] for f in frames.values()) > 0.3
