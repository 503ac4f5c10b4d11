"""Refine on an animated asset: a two-bone skinned glTF made in code, and a per-frame mesh sequence."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backend.errors import InputError
from backend.pipelines import parse_params, refine
from backend.progress import no_progress
from refine_helpers import can_glb, subject_png, two_bone_glb

SMALL = {"frames": 6, "size": 40, "source_view": "0", "bake": {"voxel_res": 40}, "time_frames": 3}


def _skin_accessors(path: Path) -> dict[str, bytes]:
    from backend.assets.gltf_primitives import buffer_bytes, load_gltf, read_accessor

    gltf = load_gltf(path)
    buffers = buffer_bytes(gltf, path.parent)
    prim = gltf.meshes[0].primitives[0]
    out = {"joints": prim.attributes.JOINTS_0, "weights": prim.attributes.WEIGHTS_0, "position": prim.attributes.POSITION,
           "inverse_bind": gltf.skins[0].inverseBindMatrices}
    for k, s in enumerate(gltf.animations[0].samplers):
        out[f"anim{k}_in"], out[f"anim{k}_out"] = s.input, s.output
    data = {name: read_accessor(gltf, index, buffers).tobytes() for name, index in out.items()}
    data["skin_joints"] = json.dumps(gltf.skins[0].joints).encode()
    data["channels"] = json.dumps([(c.target.node, c.target.path) for c in gltf.animations[0].channels]).encode()
    return data


def test_skinned_gltf_refines_once_and_keeps_skin_and_animation(tmp_path: Path) -> None:
    from backend.assets.animation import animation_times, posed_positions
    from backend.assets.material import load_textured_mesh

    asset = two_bone_glb(tmp_path / "bones.glb")
    posed = posed_positions(asset, animation_times(asset))
    top = posed[0][:, 1] > 0.3
    assert np.abs(posed[1][top] - posed[0][top]).max() > 0.1  # the upper half bends at t = 0.5
    assert np.abs(posed[1][~top & (posed[0][:, 1] < -0.1)] - posed[0][~top & (posed[0][:, 1] < -0.1)]).max() < 1e-5
    assert np.allclose(posed[2], posed[0], atol=1e-5)
    subject = subject_png(tmp_path / "subject.png")
    results = refine.run({"asset": asset, "subject": subject}, parse_params(refine.Params, SMALL),
                         tmp_path / "out.glb", no_progress)
    assert _skin_accessors(asset) == _skin_accessors(results["glb"])
    _, before = load_textured_mesh(asset)
    _, after = load_textured_mesh(results["glb"])
    assert np.abs(after - before).mean() > 0.005  # the unseen back was repainted
    report = json.loads(Path(results["report"]).read_text())
    assert report["asset"] == "animated" and len(report["times"]) == 3


def test_gaussian_sequence_and_mesh_sequence(tmp_path: Path) -> None:
    import trimesh

    from backend.splats.ply import read_ply

    folder = tmp_path / "seq"
    folder.mkdir()
    base = trimesh.load(can_glb(tmp_path / "can.glb"), force="mesh", process=False)
    for t in range(3):
        frame = base.copy()
        frame.vertices = frame.vertices + np.array([0.05 * t, 0, 0])
        frame.export(folder / f"f{t:02d}.glb")
    subject = subject_png(tmp_path / "subject.png")
    results = refine.run({"asset": folder, "subject": subject}, parse_params(refine.Params, SMALL),
                         tmp_path / "seq.ply", no_progress)
    index = json.loads(Path(results["frames_index"]).read_text())
    assert len(index["frames"]) == 3
    assert sorted(p.name for p in Path(results["sequence"]).iterdir()) == ["000.ply", "001.ply", "002.ply"]
    g0, g2 = (read_ply(tmp_path / "seq_files" / index["frames"][k]["file"]) for k in (0, 2))
    assert len(g0) == len(g2)
    assert np.allclose((g2.means - g0.means).numpy(), [0.1, 0, 0], atol=1e-4)  # Gaussians ride on the surface
    bent = folder / "f01.glb"
    trimesh.creation.icosphere(1).export(bent)
    with pytest.raises(InputError, match="changes topology"):
        refine.run({"asset": folder, "subject": subject}, parse_params(refine.Params, SMALL), tmp_path / "x.glb",
                   no_progress)
    for extra in folder.iterdir():
        if extra.name != "f00.glb":
            extra.unlink()
    with pytest.raises(InputError, match="at least 2 frames"):
        refine.run({"asset": folder, "subject": subject}, parse_params(refine.Params, SMALL), tmp_path / "x.glb",
                   no_progress)
