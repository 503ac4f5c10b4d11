"""reconstruct from a view set: Gaussians fitted to posed images, the cameras' frame found against
the mesh (a Blender-world set lands in the mesh's frame), a set of another object refused before
fitting, and a set without a mesh fitted in its own frame."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backend.assets.viewset import write_viewset
from backend.errors import InputError
from backend.pipelines import reconstruct as R
from backend.assets.cameras import Camera
from backend.render.views_frame import GLTF_FROM_BLENDER
from backend.splats.ply import read_ply
from bench.synthetic import held_out_cameras, make_asset, render_views

from bake_helpers import write_glb

FIT = dict(size=48, iterations=120, gaussians=1500, sh_degree=1)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("reconstruct_views")
    thin = make_asset("thin", 256)
    cams = held_out_cameras(16, 64, seed=5)
    images, masks = render_views(thin.mesh, thin.texture, cams)
    blender = [Camera(np.linalg.inv(GLTF_FROM_BLENDER) @ c.c2w, c.fx, c.fy, c.cx, c.cy, c.width, c.height)
               for c in cams]
    return {"root": root, "thin": thin, "glb": write_glb(root / "thin.glb", thin.mesh, [thin.mesh.uvs]),
            "views": write_viewset(root / "views", blender, images, masks).parent}


def test_blender_frame_view_set_with_a_mesh(case: dict, tmp_path: Path) -> None:
    out = tmp_path / "g.ply"
    results = R.run({"view_set": case["views"], "mesh": case["glb"]}, R.Params(**FIT), out, lambda f, s: None)
    report = json.loads(results["report"].read_text())
    assert report["source"] == "view_set" and report["view_count"] == 16 and report["heldout_views"] == 2
    assert report["views_frame"]["views_frame"] == "blender"
    assert report["training_psnr_db"] > 18 and report["heldout_psnr_db"] > 15, report
    g = read_ply(out)
    # in the mesh file's frame: the thin asset's plate spans x in +-0.45 around the origin
    assert g.means.median(0).values.abs().max() < 0.15 and g.means[:, 0].abs().quantile(0.99) < 0.6


def test_view_set_of_another_object_is_refused_before_fitting(case: dict, tmp_path: Path) -> None:
    can = make_asset("text", 64)
    other = write_glb(tmp_path / "can.glb", can.mesh, [can.mesh.uvs])
    stages: list[str] = []
    with pytest.raises(InputError, match="do not see the mesh"):
        R.run({"view_set": case["views"], "mesh": other}, R.Params(**FIT), tmp_path / "o.ply",
              lambda f, s: stages.append(s))
    assert not any("fit" in s for s in stages) and not (tmp_path / "o.ply").exists()
    with pytest.raises(InputError, match="not both"):
        R.run({"view_set": case["views"], "image": case["glb"]}, R.Params(**FIT), tmp_path / "o.ply",
              lambda f, s: None)


def test_view_set_without_a_mesh(case: dict, tmp_path: Path) -> None:
    params = R.Params(**{**FIT, "views_frame": "blender"})
    results = R.run({"view_set": case["views"]}, params, tmp_path / "g.ply", lambda f, s: None)
    report = json.loads(results["report"].read_text())
    assert report["views_frame"]["views_frame"] == "blender" and report["training_psnr_db"] > 16, report
    g = read_ply(tmp_path / "g.ply")
    # converted from Blender's world: centred where the cameras look (the origin), the plate along x
    assert g.means.median(0).values.abs().max() < 0.2
