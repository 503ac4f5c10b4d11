"""texture with the weight-free projection generator: end to end on a small synthetic vase, the
generator's modes, the reference image handling and bad inputs."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend.errors import InputError, MissingWeightsError  # noqa: E402
from backend.pipelines import parse_params  # noqa: E402
from backend.pipelines import texture  # noqa: E402
from backend.progress import no_progress  # noqa: E402
from texture_helpers import (lathe_mesh, procedural_texture, psnr, render_reference, save_glb,  # noqa: E402
                             write_rgba)

SIZE = 96


@pytest.fixture(scope="module")
def asset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("asset")
    positions, faces, uvs = lathe_mesh(48, 24)
    tex = procedural_texture(256)
    rgb, mask = render_reference(positions, faces, uvs, tex, SIZE)
    return {"mesh": save_glb(folder / "vase.glb", positions, faces, uvs),
            "image": write_rgba(folder / "ref.png", rgb, mask), "rgb": rgb, "mask": mask, "folder": folder}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _params(**kw) -> texture.Params:  # type: ignore[no-untyped-def]
    bake = {"texture_size": 256, "voxel_res": 64, **kw.pop("bake", {})}
    return parse_params(texture.Params, {"frames": 9, "size": SIZE, "bake": bake, **kw})


@pytest.fixture(scope="module")
def result(asset: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    before = {k: _digest(asset[k]) for k in ("mesh", "image")}
    stages: list[str] = []
    out = tmp_path_factory.mktemp("out") / "vase_textured.glb"
    files = texture.run({"mesh": asset["mesh"], "image": asset["image"]}, _params(), out,
                        lambda f, s: stages.append(s))
    return {"files": files, "out": out, "stages": stages, "before": before}


def test_end_to_end_outputs(asset: dict, result: dict) -> None:
    files = result["files"]
    assert files["glb"] == result["out"] and files["glb"].is_file()
    side = result["out"].with_name("vase_textured_files")
    for key in ("texture", "turntable", "turntable_video", "views", "report"):
        assert files[key].is_file() and files[key].parent in (side, side / "views")
    report = json.loads(files["report"].read_text())
    assert report["generator"] == "projection" and set(report["seconds"]) >= {"generate", "bake", "orbit_gbuffers"}
    assert report["rasterizer"] in ("moderngl", "nvdiffrast") and "rasterizer_fallback" not in report
    views = json.loads(files["views"].read_text())
    assert len(views["frames"]) == 2 * 9 - 1  # the vertical orbit's frame 0 is the horizontal one's
    assert any("projection" in s for s in result["stages"]) and any("bak" in s for s in result["stages"])
    assert {k: _digest(asset[k]) for k in ("mesh", "image")} == result["before"]  # inputs untouched


def test_result_keeps_mesh_and_reproduces_the_front(asset: dict, result: dict) -> None:
    from backend.assets.load import load_mesh
    from backend.assets.images import read_image
    from backend.assets.mesh import normalize
    from backend.render.gbuffer import render_gbuffers

    original, baked = load_mesh(asset["mesh"]), load_mesh(result["files"]["glb"])
    assert baked.num_vertices == original.num_vertices and np.array_equal(baked.faces, original.faces)
    assert np.allclose(baked.positions, original.positions, atol=1e-6)
    assert np.allclose(baked.uvs, original.uvs, atol=1e-6)
    tex = read_image(result["files"]["texture"])[..., :3]
    norm_mesh, norm = normalize(original)
    camera, _ = texture.reference_camera(SIZE, SIZE, norm)
    g = render_gbuffers(norm_mesh, [camera], "torch")
    front = texture.sample_texture(original, tex, g.tri_id, g.bary, g.mask)[0]
    assert psnr(front, asset["rgb"], asset["mask"]) > 28.0


def test_projection_modes(asset: dict) -> None:
    from backend.assets.mesh import normalize
    from backend.assets.load import load_mesh
    from backend.models import generators
    from backend.models.types import GenerateOptions, Reference
    from backend.models.reference import load_reference
    from backend.render.gbuffer import render_gbuffers

    mesh, norm = normalize(load_mesh(asset["mesh"]))
    ref = load_reference(asset["image"])
    camera, frame0 = texture.reference_camera(SIZE, SIZE, norm)
    orbits = texture.orbit_gbuffers(mesh, 5, 48, frame0, "torch", no_progress)
    reference = Reference(ref.rgb, ref.mask, camera, render_gbuffers(mesh, [camera], "torch"))
    gen = generators.create("projection")
    base = gen.generate(mesh, orbits, reference, GenerateOptions(), no_progress)
    assert set(base) == {"horizontal", "vertical"} and base["horizontal"].shape == (5, 48, 48, 3)
    assert np.array_equal(base["horizontal"][0], base["vertical"][0])  # one reference view
    covered = orbits[0].gbuffers.mask.numpy()
    assert (base["horizontal"][~covered] == 0).all() and base["horizontal"][covered].mean() > 0.1
    init = {k: np.full_like(v, 0.25) for k, v in base.items()}
    masks = {k: np.zeros(v.shape[:3], bool) for k, v in base.items()}
    for m in masks.values():
        m[:, :, :24] = True
    opts = GenerateOptions(init_frames=init, strength=0.5, masks=masks)
    mixed = gen.generate(mesh, orbits, reference, opts, no_progress)
    for name in base:
        keep = ~masks[name]
        assert np.array_equal(mixed[name][keep], init[name][keep])  # masked mode keeps the rest exactly
        assert np.allclose(mixed[name][masks[name]], 0.5 * base[name][masks[name]] + 0.125, atol=1e-5)
    with pytest.raises(InputError, match="init frames"):
        gen.generate(mesh, orbits, reference, GenerateOptions(strength=0.5), no_progress)
    with pytest.raises(InputError, match="mask for the horizontal orbit"):
        gen.generate(mesh, orbits, reference, GenerateOptions(
            init_frames=init, masks={"horizontal": masks["horizontal"][:2]}), no_progress)


def test_grabcut_cut_without_alpha(asset: dict, tmp_path: Path) -> None:
    from backend.assets.images import write_png
    from backend.models.reference import load_reference

    rgb, mask = asset["rgb"], asset["mask"]
    backdrop = np.array([0.85, 0.85, 0.8], np.float32)
    photo = np.where(mask[..., None], rgb, backdrop)
    ref = load_reference(write_png(tmp_path / "photo.png", photo))
    assert not ref.had_alpha
    iou = (ref.mask & mask).sum() / (ref.mask | mask).sum()
    assert iou > 0.9
    assert (ref.rgb[~ref.mask] == 0).all()  # composited on black


@pytest.mark.parametrize("case", ["corrupt", "tiny", "grey", "huge", "transparent", "missing"])
def test_bad_reference_images(asset: dict, tmp_path: Path, case: str) -> None:
    from backend.assets.images import write_png

    path = tmp_path / f"{case}.png"
    if case == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    elif case == "tiny":
        write_png(path, np.ones((1, 1, 3), np.float32) * 0.3)
    elif case == "grey":
        write_png(path, np.full((64, 64, 3), 0.5, np.float32))
    elif case == "huge":
        write_png(path, np.zeros((16, 9000, 3), np.float32))
    elif case == "transparent":
        write_png(path, np.zeros((64, 64, 4), np.float32))
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(InputError) as err:
        texture.run({"mesh": asset["mesh"], "image": path}, _params(), tmp_path / "out.glb", no_progress)
    assert path.name in str(err.value)
    assert not (tmp_path / "out.glb").exists() and not (tmp_path / "out_files").exists()
    if before is not None:
        assert path.read_bytes() == before


def test_missing_weights_fail_before_any_work(asset: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setenv("ORBITEX_MODELS_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("ORBITEX_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    stages: list[str] = []
    with pytest.raises(MissingWeightsError) as err:
        texture.run({"mesh": asset["mesh"], "image": asset["image"]}, _params(generator="wan-vace"),
                    tmp_path / "out.glb", lambda f, s: stages.append(s))
    assert "wan2.1-vace-1.3b" in str(err.value) and "GB" in str(err.value)
    assert "python -m backend models download wan2.1-vace-1.3b" in str(err.value)
    assert all("checking" in s for s in stages) and not (tmp_path / "out_files").exists()
    with pytest.raises(InputError, match="4k \\+ 1"):
        texture.run({"mesh": asset["mesh"], "image": asset["image"]}, _params(generator="wan-vace", frames=8),
                    tmp_path / "out.glb", no_progress)


def test_camera_file(asset: dict, tmp_path: Path) -> None:
    from backend.assets.mesh import normalize
    from backend.assets.load import load_mesh
    from backend.assets.cameras import reference_c2w

    mesh = load_mesh(asset["mesh"])
    _, norm = normalize(mesh)
    c2w = reference_c2w()
    c2w[:3, 3] = norm.invert(c2w[None, :3, 3])[0]  # the default view, written in the file's frame
    path = tmp_path / "camera.json"
    path.write_text(json.dumps({"camera_angle_y": 2 * np.arctan(16 / 35), "w": 2 * SIZE, "h": 2 * SIZE,
                                "frames": [{"file_path": "ref.png", "transform_matrix": c2w.tolist()}]}))
    camera = texture.read_reference_camera(path, SIZE, SIZE)
    ref_camera, frame0 = texture.reference_camera(SIZE, SIZE, norm, camera)
    default, _ = texture.reference_camera(SIZE, SIZE, norm)
    assert np.allclose(ref_camera.c2w, default.c2w, atol=1e-6) and np.allclose(frame0, default.c2w, atol=1e-6)
    assert abs(ref_camera.fy - default.fy) < 1e-6 * default.fy
    path.write_text(json.dumps({"frames": [{"transform_matrix": [[1, 0], [0, 1]]}]}))
    with pytest.raises(InputError, match="transform_matrix"):
        texture.read_reference_camera(path, SIZE, SIZE)
    path.write_text(json.dumps({"w": 100, "h": 50, "fl_x": 50, "frames": [{"transform_matrix": c2w.tolist()}]}))
    with pytest.raises(InputError, match="aspect"):
        texture.read_reference_camera(path, SIZE, SIZE)


def test_second_uv_map_kept_glb_and_no_turntable(asset: dict, tmp_path: Path) -> None:
    """uv_map=TEXCOORD_1: the texture lands on that map of the input's own glTF (node transform,
    vertex order and the other UV map kept); turntable=False skips the preview."""
    from bake_helpers import write_glb

    from backend.assets.gltf_primitives import load_gltf, load_gltf_mesh
    from backend.assets.images import read_image
    from backend.assets.mesh import make_mesh, normalize
    from backend.render.gbuffer import render_gbuffers

    positions, faces, uvs = lathe_mesh(48, 24)
    other = np.stack([1 - uvs[:, 1], uvs[:, 0]], 1)  # TEXCOORD_0: another layout the bake must not use
    matrix = np.diag([2.0, 2.0, 2.0, 1.0])
    matrix[:3, 3] = [0.3, -1.0, 0.5]  # a similarity: normalization undoes it, so the reference still fits
    glb = write_glb(tmp_path / "two_maps.glb", make_mesh(positions, faces, uvs), [other, uvs], matrix)
    out = tmp_path / "two_maps_textured.glb"
    files = texture.run({"mesh": glb, "image": asset["image"]}, _params(bake={"uv_map": "TEXCOORD_1"}, turntable=False),
                        out, no_progress)
    assert set(files) == {"glb", "texture", "views", "report"} and files["glb"] == out
    assert not list(tmp_path.glob("two_maps_textured_files/turntable*"))
    src, dst = load_gltf(glb), load_gltf(out)
    assert dst.nodes[0].matrix == src.nodes[0].matrix
    prim = dst.meshes[0].primitives[0]
    assert dst.materials[prim.material].pbrMetallicRoughness.baseColorTexture.texCoord == 1
    baked = load_gltf_mesh(out, "TEXCOORD_1").mesh
    assert np.array_equal(baked.faces, faces) and np.allclose(baked.uvs, uvs, atol=1e-6)
    assert np.allclose(load_gltf_mesh(out, "TEXCOORD_0").mesh.uvs, other, atol=1e-6)
    assert json.loads(files["report"].read_text())["uv_map"] == "TEXCOORD_1"
    norm_mesh, norm = normalize(baked)
    camera, _ = texture.reference_camera(SIZE, SIZE, norm)
    g = render_gbuffers(norm_mesh, [camera], "torch")
    front = texture.sample_texture(baked, read_image(files["texture"])[..., :3], g.tri_id, g.bary, g.mask)[0]
    assert psnr(front, asset["rgb"], asset["mask"]) > 28.0
    with pytest.raises(InputError, match="no UV map 'TEXCOORD_4'"):
        texture.run({"mesh": glb, "image": asset["image"]}, _params(bake={"uv_map": "TEXCOORD_4"}), tmp_path / "x.glb",
                    no_progress)


def test_params_nest_the_bake_options_for_json_and_cli() -> None:
    """texture's `bake` is a BakeParams: a JSON object (unknown or bad keys named with dots), filled
    by the CLI's bake flags (dest "bake.NAME"), and served by GET /job-types as a closed object."""
    from backend.bake.params import BakeParams
    from backend.cli import build_parser, params_from_flags
    from backend.service.app import _describe

    params = parse_params(texture.Params, {"frames": 5, "bake": {"method": "greedy", "texture_size": 64}})
    assert params.bake == BakeParams(method="greedy", texture_size=64)
    assert parse_params(texture.Params, {}).bake == BakeParams()
    for bad, message in (({"bake": {"metod": "mrf"}}, "bake.metod"), ({"bake": {"method": "best"}}, "bake.method"),
                         ({"bake": {"texture_size": 4}}, "bake: texture_size"), ({"bake": 3}, "'bake'"),
                         ({"texture_size": 64}, "texture_size"), ({"bake": {"views_frame": "gltf"}}, "views_frame")):
        with pytest.raises(InputError, match=message):
            parse_params(texture.Params, bad)
    args = build_parser("texture").parse_args(["texture", "m.glb", "i.png", "--out", "o", "--frames", "5",
                                               "--method", "greedy", "--texture-size", "64", "--uv-map", "1"])
    values = params_from_flags(texture.Params, vars(args))
    assert values == {"frames": 5, "bake": {"method": "greedy", "texture_size": 64, "uv_map": "1"}}
    assert parse_params(texture.Params, values).bake.uv_map == "1"
    schema = _describe("texture")["params"]
    bake = schema["properties"]["bake"]
    assert "method" not in schema["properties"] and bake["additionalProperties"] is False
    assert {name: prop["default"] for name, prop in bake["properties"].items()} == dataclasses.asdict(BakeParams())
