"""The `bake` pipeline on files: GLB in -> GLB out with the input's UVs, vertices, triangles and
transform; xatlas when there are no UVs; --uv-map; zipped view sets; every bad input."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from backend import cli
from backend.assets.gltf_primitives import load_gltf, load_gltf_mesh
from backend.assets.mesh import make_mesh
from backend.assets.viewset import write_viewset
from backend.errors import InputError
from backend.pipelines import bake as bake_pipeline
from backend.pipelines import parse_params
from backend.assets.cameras import Camera, orbit
from bench.synthetic import render_views

from bake_helpers import cube_mesh, smooth_texture, write_glb

# a node transform that mirrors nothing but moves, turns and scales the cube
MATRIX = np.array([[0.0, -2.0, 0.0, 1.0], [2.0, 0.0, 0.0, -0.5], [0.0, 0.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.0]])


def _world(mesh):  # type: ignore[no-untyped-def]
    pos = mesh.positions @ MATRIX[:3, :3].T + MATRIX[:3, 3]
    return make_mesh(pos, mesh.faces, mesh.uvs)


def _digests(*paths: Path) -> dict[str, str]:
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _orbit_views(folder: Path, mesh, texture, size: int = 64, frames: int = 8) -> Path:  # type: ignore[no-untyped-def]
    """A view set of `mesh` (in world space) around its centre, rendered with `texture`."""
    centre = (mesh.positions.min(0) + mesh.positions.max(0)) / 2
    extent = float((mesh.positions.max(0) - mesh.positions.min(0)).max())
    cams = []
    for cam in orbit("horizontal", frames, size) + orbit("vertical", frames, size)[1:]:
        c2w = cam.c2w.copy()
        c2w[:3, 3] = c2w[:3, 3] * extent * 1.2 + centre
        cams.append(Camera(c2w, cam.fx, cam.fy, cam.cx, cam.cy, size, size))
    images, masks = render_views(mesh, texture, cams)
    write_viewset(folder, cams, images, masks)
    return folder


@pytest.fixture(scope="module")
def cube_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    root = tmp_path_factory.mktemp("bake")
    cube = cube_mesh()
    uv1 = cube.uvs[:, ::-1].copy()  # a second UV map: the atlas transposed
    glb = write_glb(root / "cube.glb", cube, [cube.uvs, uv1], MATRIX)
    texture = smooth_texture(64)
    views = _orbit_views(root / "views", make_mesh(_world(cube).positions, cube.faces, uv1), texture)
    return glb, views, texture


def test_cli_options_switch_the_beyond_paper_stages(cube_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    glb, views, _ = cube_case
    base = ["bake", str(glb), str(views), "--texture-size", "64", "--voxel-res", "16"]
    assert cli.main([*base, "--out", str(tmp_path / "on.glb")]) == 0
    on = json.loads((tmp_path / "on_files" / "report.json").read_text())
    assert "alignment" in on and len(on["frame_detail"]) == on["view_count"] and "seam_blended_texels" in on
    assert on["sharpen"] == 1.0 and on["soft_selection"] == 0.1 and "resolution" in on["seconds"]
    assert on["fit"]["steps"] == 300 and on["fit"]["loss_after"] <= on["fit"]["loss_before"]
    assert cli.main([*base, "--out", str(tmp_path / "off.glb"), "--no-align", "--detail-weight", "0",
                     "--no-seam-blend", "--no-seam-levelling", "--sharpen", "0", "--resolution-weight", "0",
                     "--soft-selection", "0", "--fit-steps", "0"]) == 0
    off = json.loads((tmp_path / "off_files" / "report.json").read_text())
    assert not {"alignment", "frame_detail", "seam_blended_texels", "seam_edges", "sharpen", "soft_selection",
                "fit"} & set(off)
    assert "resolution" not in off["seconds"]


def test_glb_keeps_vertices_triangles_transform_and_uv_map(cube_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    glb, views, texture = cube_case
    before = _digests(glb, views)
    out = tmp_path / "baked.glb"
    code = cli.main(["bake", str(glb), str(views), "--out", str(out), "--texture-size", "64", "--voxel-res", "16",
                     "--uv-map", "TEXCOORD_1"])
    assert code == 0 and out.is_file()
    assert _digests(glb, views) == before  # inputs untouched
    src, dst = load_gltf(glb), load_gltf(out)
    assert dst.nodes[0].matrix == src.nodes[0].matrix
    prim_in, prim_out = src.meshes[0].primitives[0], dst.meshes[0].primitives[0]
    assert dst.accessors[prim_out.attributes.POSITION].count == src.accessors[prim_in.attributes.POSITION].count
    a, b = load_gltf_mesh(glb, "TEXCOORD_1"), load_gltf_mesh(out, "TEXCOORD_1")
    assert np.array_equal(a.mesh.faces, b.mesh.faces) and np.allclose(a.mesh.positions, b.mesh.positions)
    assert np.allclose(a.mesh.uvs, b.mesh.uvs) and np.allclose(load_gltf_mesh(out).mesh.uvs, a.mesh.uvs[:, ::-1])
    material = dst.materials[prim_out.material]
    assert material.pbrMetallicRoughness.baseColorTexture.texCoord == 1
    assert dst.images[dst.textures[material.pbrMetallicRoughness.baseColorTexture.index].source].mimeType == "image/png"
    side = tmp_path / "baked_files"
    report = json.loads((side / "report.json").read_text())
    assert report["uv_map"] == "TEXCOORD_1" and report["vertices_in"] == report["vertices_out"] == 24
    assert report["rasterizer"] in ("moderngl", "nvdiffrast") and "rasterizer_fallback" not in report
    # the baked texture matches the one the views were rendered with, where the views saw it
    from backend.assets.images import read_image

    baked = read_image(side / "texture.png")
    assert baked.shape == (64, 64, 3)
    from backend.bake.uv_raster import texel_samples

    tx = texel_samples(a.mesh, 64)
    err = np.abs(baked[tx.rows, tx.cols] - texture[tx.rows, tx.cols]).mean()
    assert err < 0.05, err


def test_zipped_view_set_and_service_params(cube_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    glb, views, _ = cube_case
    archive = tmp_path / "views.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in views.rglob("*"):
            zf.write(f, "set/" + f.relative_to(views).as_posix())
    params = parse_params(bake_pipeline.Params, {"method": "greedy", "texture_size": 32, "voxel_res": 8,
                                                 "uv_map": "1"})
    out = bake_pipeline.run({"mesh": glb, "views": archive}, params, tmp_path / "job", lambda f, s: None)
    assert set(out) == {"glb", "texture", "report"} and all(p.is_file() for p in out.values())
    assert out["glb"] == tmp_path / "job" / "baked.glb"


def test_glb_without_uvs_gets_an_xatlas_map_and_keeps_its_transform(tmp_path: Path) -> None:
    cube = cube_mesh()
    glb = write_glb(tmp_path / "plain.glb", make_mesh(cube.positions, cube.faces), None, MATRIX)
    views = _orbit_views(tmp_path / "views", _world(cube), smooth_texture(64), size=48, frames=6)
    out = tmp_path / "out.glb"
    assert cli.main(["bake", str(glb), str(views), "--out", str(out), "--texture-size", "64", "--voxel-res", "8"]) == 0
    dst = load_gltf(out)
    assert dst.nodes[0].matrix == load_gltf(glb).nodes[0].matrix
    baked = load_gltf_mesh(out)
    assert baked.uv_maps == ["TEXCOORD_0"] and len(baked.mesh.faces) == len(cube.faces)
    assert baked.mesh.num_vertices >= cube.num_vertices  # only xatlas seam copies are added
    report = json.loads((tmp_path / "out_files" / "report.json").read_text())
    assert report["uv_map"] == "xatlas" and report["vertices_out"] == baked.mesh.num_vertices
    # every new vertex sits where an input vertex was (in world space)
    world_in = _world(cube).positions
    d = np.linalg.norm(baked.mesh.positions[:, None] - world_in[None], axis=2).min(1)
    assert d.max() < 1e-4


def test_obj_input_is_written_with_trimesh(tmp_path: Path) -> None:
    import trimesh

    cube = cube_mesh()
    obj = tmp_path / "cube.obj"
    trimesh.Trimesh(cube.positions, cube.faces, visual=trimesh.visual.TextureVisuals(uv=cube.uvs),
                    process=False).export(obj)
    views = _orbit_views(tmp_path / "views", cube, smooth_texture(64), size=48, frames=6)
    out = tmp_path / "out"
    assert cli.main(["bake", str(obj), str(views), "--out", str(out), "--texture-size", "32", "--voxel-res", "8",
                     "--method", "average"]) == 0
    loaded = trimesh.load(out / "baked.glb", force="mesh", process=False)
    assert len(loaded.faces) == 12 and loaded.visual.uv is not None


# --- bad input ---------------------------------------------------------------------------------------

def _fails(args: list[str], capsys: pytest.CaptureFixture[str], message: str) -> None:
    assert cli.main(["bake", *args]) == 2
    assert message in capsys.readouterr().err


def test_missing_and_malformed_transforms(cube_case, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    glb, _, _ = cube_case
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails([str(glb), str(empty), "--out", str(tmp_path / "o.glb")], capsys, "transforms.json")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "transforms.json").write_text("{not json")
    _fails([str(glb), str(bad), "--out", str(tmp_path / "o.glb")], capsys, "transforms.json")
    _fails([str(glb), str(tmp_path / "nowhere"), "--out", str(tmp_path / "o.glb")], capsys, "nowhere")
    assert not (tmp_path / "o.glb").exists()


def test_wrong_image_size_and_nan_camera_name_the_frame(cube_case, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    glb, views, _ = cube_case
    import shutil

    from backend.assets.images import write_png

    small = tmp_path / "small"
    shutil.copytree(views, small)
    write_png(small / "images" / "0003.png", np.zeros((20, 30, 3), np.float32))
    _fails([str(glb), str(small), "--out", str(tmp_path / "o.glb")], capsys, "0003")
    nan = tmp_path / "nan"
    shutil.copytree(views, nan)
    meta = json.loads((nan / "transforms.json").read_text())
    meta["frames"][2]["transform_matrix"][0][3] = float("nan")
    (nan / "transforms.json").write_text(json.dumps(meta))  # Python writes NaN, as some tools do
    assert cli.main(["bake", str(glb), str(nan), "--out", str(tmp_path / "o.glb")]) == 2
    err = capsys.readouterr().err
    assert "0002" in err or "frame 2" in err


def test_views_looking_away_name_the_frame(cube_case, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    glb, views, _ = cube_case
    import shutil

    away = tmp_path / "away"
    shutil.copytree(views, away)
    meta = json.loads((away / "transforms.json").read_text())
    m = np.asarray(meta["frames"][4]["transform_matrix"], dtype=float)
    m[:3, 2] *= -1  # turn the camera around: it looks away from the mesh
    m[:3, 0] *= -1
    meta["frames"][4]["transform_matrix"] = m.tolist()
    (away / "transforms.json").write_text(json.dumps(meta))
    _fails([str(glb), str(away), "--out", str(tmp_path / "o.glb"), "--texture-size", "32"], capsys,
           "sees none of the mesh")


@pytest.mark.writes_invalid_gltf  # degenerate triangles have zero normals, kept as the input has them
def test_degenerate_meshes(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cube = cube_mesh()
    views = _orbit_views(tmp_path / "views", cube, smooth_texture(32), size=32, frames=4)
    flat = cube.positions.copy()
    flat[:] = 0.25  # every triangle collapses to one point
    zero = tmp_path / "zero.obj"
    zero.write_text("".join(f"v {x} {y} {z}\n" for x, y, z in flat) + "".join(
        f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in cube.faces))
    _fails([str(zero), str(views), "--out", str(tmp_path / "o.glb")], capsys, "zero surface area")
    # some degenerate triangles among good ones: they are skipped, the rest bakes
    pos = np.concatenate([cube.positions, [[0, 0, 0], [0, 0, 0], [0, 0, 0]]])
    faces = np.concatenate([cube.faces, [[24, 25, 26]]])
    uvs = np.concatenate([cube.uvs, [[0.1, 0.1], [0.2, 0.1], [0.1, 0.2]]])
    mixed = write_glb(tmp_path / "mixed.glb", make_mesh(pos, faces, uvs), [uvs])
    assert cli.main(["bake", str(mixed), str(views), "--out", str(tmp_path / "m.glb"), "--texture-size", "32",
                     "--voxel-res", "8"]) == 0
    assert json.loads((tmp_path / "m_files" / "report.json").read_text())["vertices_out"] == 27


def test_unknown_uv_map_and_overwrite_refused(cube_case, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    glb, views, _ = cube_case
    _fails([str(glb), str(views), "--out", str(tmp_path / "o.glb"), "--uv-map", "TEXCOORD_5"], capsys,
           "no UV map 'TEXCOORD_5'; the mesh has TEXCOORD_0, TEXCOORD_1")
    before = _digests(glb)
    _fails([str(glb), str(views), "--out", str(glb)], capsys, "overwrite the input mesh")
    assert _digests(glb) == before
    with pytest.raises(InputError):
        parse_params(bake_pipeline.Params, {"method": "best"})


def test_pipeline_module_is_torch_free() -> None:
    import subprocess
    import sys

    code = "import sys, backend.pipelines.bake; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
