"""--views-frame: a view set written in glTF's or Blender's frame bakes the same; cameras that do not
see the mesh where the images show it (another object, another scale) are refused before any long
work, with the numbers; without alpha the frame is found by photo-consistency; the same for
texture's reference camera."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backend import cli
from backend.assets.images import read_image
from backend.assets.mesh import make_mesh
from backend.assets.viewset import write_viewset
from backend.errors import InputError
from backend.assets.cameras import Camera
from backend.render.views_frame import GLTF_FROM_BLENDER, resolve_views_frame
from bench.synthetic import corrupt, held_out_cameras, make_asset, render_views

from bake_helpers import write_glb

BLENDER_FROM_GLTF = np.linalg.inv(GLTF_FROM_BLENDER)
BAKE = ["--texture-size", "64", "--voxel-res", "16"]


def _in_blender_frame(cameras: list[Camera]) -> list[Camera]:
    """The cameras as a Blender add-on writes them for a scene whose glTF export is the mesh."""
    return [Camera(BLENDER_FROM_GLTF @ c.c2w, c.fx, c.fy, c.cx, c.cy, c.width, c.height) for c in cameras]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("frames")
    thin, can = make_asset("thin", 256), make_asset("text", 256)
    cams = held_out_cameras(12, 64, seed=3)
    images, masks = render_views(thin.mesh, thin.texture, cams)
    images = corrupt(images, seed=2)
    return {"root": root, "cams": cams, "images": images, "masks": masks, "thin": thin, "can": can,
            "glb": write_glb(root / "thin.glb", thin.mesh, [thin.mesh.uvs]),
            "gltf": write_viewset(root / "gltf", cams, images, masks).parent,
            "blender": write_viewset(root / "blender", _in_blender_frame(cams), images, masks).parent}


def _bake(glb: Path, views: Path, out: Path, *extra: str) -> int:
    return cli.main(["bake", str(glb), str(views), "--out", str(out), *BAKE, *extra])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def test_both_frames_bake_the_same_texture(scene: dict, tmp_path: Path) -> None:
    reports = {}
    for frame in ("gltf", "blender"):
        assert _bake(scene["glb"], scene[frame], tmp_path / f"{frame}.glb") == 0
        reports[frame] = json.loads((tmp_path / f"{frame}_files" / "report.json").read_text())["views_frame"]
        assert reports[frame]["views_frame"] == frame and reports[frame]["decided_by"] == "silhouette IoU"
        chosen, other = reports[frame]["candidates"][frame], reports[frame]["candidates"]
        assert chosen["iou"] > 0.9 > max(c["iou"] for name, c in other.items() if name != frame)
    a, b = (read_image(tmp_path / f"{f}_files" / "texture.png") for f in ("gltf", "blender"))
    assert _psnr(a, b) >= 40.0
    # asked for the wrong frame: refused, pointing at the right one
    with pytest.raises(InputError, match="use --views-frame blender"):
        from backend.pipelines import bake, parse_params

        bake.run({"mesh": scene["glb"], "views": scene["blender"]}, parse_params(bake.Params, {
            "views_frame": "gltf", "texture_size": 64, "voxel_res": 16}), tmp_path / "wrong.glb", lambda f, s: None)
    assert not (tmp_path / "wrong.glb").exists()


def test_view_set_of_another_object_is_refused(scene: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    can = write_glb(scene["root"] / "can.glb", scene["can"].mesh, [scene["can"].mesh.uvs])
    assert _bake(can, scene["gltf"], tmp_path / "o.glb") == 2
    err = capsys.readouterr().err
    assert "do not see the mesh where its images show it" in err and "IoU" in err and "wrong mesh" in err
    assert not (tmp_path / "o.glb").exists()
    # the right mesh three times too large: a scale mismatch, said so
    thin = scene["thin"].mesh
    big = write_glb(scene["root"] / "big.glb", make_mesh(thin.positions * 3, thin.faces, thin.uvs), [thin.uvs])
    assert _bake(big, scene["gltf"], tmp_path / "o.glb") == 2
    err = capsys.readouterr().err
    assert "scale" in err or "outside most views" in err


def test_frame_without_alpha_by_photo_consistency(scene: dict, tmp_path: Path) -> None:
    thin = scene["thin"]
    folder = write_viewset(tmp_path / "plain", _in_blender_frame(scene["cams"]), scene["images"]).parent
    assert _bake(scene["glb"], folder, tmp_path / "plain.glb") == 0
    report = json.loads((tmp_path / "plain_files" / "report.json").read_text())["views_frame"]
    assert report["views_frame"] == "blender" and report["decided_by"] == "photo-consistency"
    scores = report["candidates"]
    assert scores["blender"]["iou"] is None and scores["blender"]["consistency"] > 2 * scores["gltf"]["consistency"]
    # the same images against another object: refused without alpha too
    with pytest.raises(InputError, match="photo-consistency"):
        resolve_views_frame(scene["can"].mesh, scene["cams"], scene["images"], None)
    cams, choice = resolve_views_frame(thin.mesh, scene["cams"], scene["images"], None, "gltf")
    assert choice.frame == "gltf" and np.allclose(cams[0].c2w, scene["cams"][0].c2w)
    # flat images with an opaque alpha show neither a silhouette nor detail: used as written, said so
    flat = np.full_like(scene["images"], 0.4)
    _, choice = resolve_views_frame(thin.mesh, scene["cams"], flat, np.ones(flat.shape[:3], bool))
    assert choice.frame == "gltf" and choice.decided_by.startswith("nothing")
    assert all(c.iou is None and c.consistency is None for c in choice.candidates.values())


def test_service_params_take_views_frame() -> None:
    from backend.pipelines import bake, parse_params, texture

    assert parse_params(bake.Params, {"views_frame": "blender"}).views_frame == "blender"
    assert parse_params(texture.Params, {"views_frame": "gltf"}).views_frame == "gltf"
    for params in (bake.Params, texture.Params):
        with pytest.raises(InputError, match="views_frame"):
            parse_params(params, {"views_frame": "z-up"})


def test_texture_reference_camera_frame(tmp_path: Path) -> None:
    from backend.pipelines import parse_params, texture
    from backend.assets.cameras import ORBIT_VFOV_DEG, reference_c2w

    thin = make_asset("thin", 256)
    glb = write_glb(tmp_path / "thin.glb", thin.mesh, [thin.mesh.uvs])
    # the reference: the mesh seen from above and to the side (not the default view)
    cam = Camera.from_fov(reference_c2w(), ORBIT_VFOV_DEG, 64, 64)
    turn = np.eye(4)
    turn[:3, :3] = [[1, 0, 0], [0, np.cos(-0.6), -np.sin(-0.6)], [0, np.sin(-0.6), np.cos(-0.6)]]
    cam = Camera(turn @ cam.c2w, cam.fx, cam.fy, cam.cx, cam.cy, 64, 64)
    rgb, mask = render_views(thin.mesh, thin.texture, [cam], background=0.0)
    from backend.assets.images import write_png

    image = write_png(tmp_path / "ref.png", np.concatenate([rgb[0], mask[0, ..., None]], -1))
    params = parse_params(texture.Params, {"frames": 5, "size": 64, "bake": {"texture_size": 64, "voxel_res": 16},
                                           "turntable": False})

    def camera_file(c2w: np.ndarray) -> Path:
        path = tmp_path / "camera.json"
        path.write_text(json.dumps({"camera_angle_y": np.radians(ORBIT_VFOV_DEG),
                                    "frames": [{"file_path": "ref.png", "transform_matrix": c2w.tolist()}]}))
        return path

    files = texture.run({"mesh": glb, "image": image, "camera": camera_file(BLENDER_FROM_GLTF @ cam.c2w)}, params,
                        tmp_path / "out.glb", lambda f, s: None)
    report = json.loads(files["report"].read_text())["views_frame"]
    assert report["views_frame"] == "blender" and report["candidates"]["blender"]["iou"] > 0.9
    stages: list[str] = []
    away = cam.c2w.copy()
    away[:3, 3] += [2.0, 0.0, 0.0]  # the camera moved off to the side: the mesh is not where the image shows it
    with pytest.raises(InputError, match="reference camera"):
        texture.run({"mesh": glb, "image": image, "camera": camera_file(away)}, params, tmp_path / "away.glb",
                    lambda f, s: stages.append(s))
    assert not any("orbit" in s for s in stages) and not (tmp_path / "away_files").exists()
