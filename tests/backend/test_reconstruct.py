"""The reconstruct pipeline: textured mesh -> Gaussians, image -> IM-3D loop with a tiny random Wan
image-to-video model loaded through the registry and diffusers' from_pretrained, and its errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.errors import InputError, MissingWeightsError
from backend.pipelines import load, parse_params
from backend.pipelines import reconstruct as R
from backend.splats.ply import read_ply

sys.path.insert(0, str(Path(__file__).parent))
from splats_helpers import checker_texture, save_tiny_wan_i2v, textured_glb  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv("ORBITEX_MODELS_DIR", str(folder))
    monkeypatch.setenv("ORBITEX_MODELS_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    return folder


def test_registered_and_importable_without_torch():
    assert load("reconstruct") is R
    code = "import sys; import backend.pipelines.reconstruct as r; r.Params(); sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
    params = parse_params(R.Params, {"view_count": 16, "size": 64, "rounds": 3, "strength": 0.4})
    assert (params.view_count, params.rounds, params.strength) == (16, 3, 0.4)
    with pytest.raises(InputError):
        parse_params(R.Params, {"view_count": 1})


def test_view_count_flag_and_its_old_name(capsys):
    from backend.cli import build_parser, params_from_flags

    def params(*flags: str) -> R.Params:
        args = build_parser("reconstruct").parse_args(["reconstruct", "--mesh", "m.glb", "--out", "o.ply", *flags])
        return parse_params(R.Params, params_from_flags(R.Params, vars(args)))

    assert params("--view-count", "12").view_count == 12 and params().view_count == R.Params().view_count
    assert "deprecated" not in capsys.readouterr().err
    assert params("--views", "9").view_count == 9  # the old name still works, and says what replaced it
    assert "--views is deprecated; use --view-count" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser("reconstruct").parse_args(["reconstruct", "--help"])
    shown = capsys.readouterr().out
    assert "--view-count" in shown and "--views " not in shown.replace("--views-frame", "")  # not offered


def test_texture_loads_and_samples_like_the_file(tmp_path):
    from backend.assets.material import load_base_color, sample_texture

    tex = checker_texture(64)
    path = textured_glb(tmp_path / "a.glb", texture=tex)
    loaded = load_base_color(path)
    assert loaded.shape == (64, 64, 3)
    np.testing.assert_allclose(loaded, tex / 255.0, atol=1e-6)
    # texel centres: u = (x + 0.5) / w, v = 1 - (y + 0.5) / h (OpenGL origin)
    uv = np.array([[(10 + 0.5) / 64, 1 - (20 + 0.5) / 64]])
    np.testing.assert_allclose(sample_texture(loaded, uv)[0], tex[20, 10] / 255.0, atol=1e-6)


def test_textured_mesh_to_gaussians(tmp_path):
    mesh_path = textured_glb(tmp_path / "asset.glb")
    before = mesh_path.read_bytes()
    out = tmp_path / "result.ply"
    results = R.run({"mesh": mesh_path}, R.Params(view_count=12, size=48, iterations=150, gaussians=1500, sh_degree=1),
                    out, lambda f, s: None)
    assert results["gaussians"] == out and mesh_path.read_bytes() == before
    g = read_ply(out)
    report = json.loads(results["report"].read_text())
    assert len(g) == report["gaussians"] > 100 and g.sh_degree == 1
    assert report["training_psnr_db"] > 20, report
    assert report["losses"] == ["l1", "ssim", "mask"]
    assert report["mesh_views"]["rasterizer"] in ("moderngl", "nvdiffrast")
    # in the file's frame: the asset spans x in +-0.5, y in +-0.4
    centre = g.means.median(0).values
    assert centre.abs().max() < 0.1 and g.means[:, 0].abs().quantile(0.99) < 0.6
    assert results["preview"].is_file()


def test_input_errors(tmp_path):
    import trimesh

    white = tmp_path / "white.glb"
    trimesh.creation.box().export(white)
    with pytest.raises(InputError, match="no base-colour texture"):
        R.run({"mesh": white}, R.Params(view_count=4, size=16), tmp_path / "o.ply", lambda f, s: None)
    with pytest.raises(InputError, match="needs a textured mesh"):
        R.run({}, R.Params(), tmp_path / "o.ply", lambda f, s: None)
    box_ply = tmp_path / "box.ply"
    trimesh.creation.box().export(box_ply)
    before = box_ply.read_bytes()
    with pytest.raises(InputError, match="would overwrite"):
        R.run({"mesh": box_ply}, R.Params(), box_ply, lambda f, s: None)
    assert box_ply.read_bytes() == before


def _subject_png(path: Path) -> Path:
    from PIL import Image

    rgba = np.zeros((80, 64, 4), np.uint8)
    rgba[15:65, 12:52] = (200, 60, 40, 255)
    rgba[30:50, 20:44] = (40, 90, 200, 255)
    Image.fromarray(rgba).save(path)
    return path


def test_image_path_without_weights_names_the_model(tmp_path, models_dir):
    with pytest.raises(MissingWeightsError) as err:
        R.run({"image": _subject_png(tmp_path / "s.png")}, R.Params(view_count=8, size=32), tmp_path / "o.ply",
              lambda f, s: None)
    assert "wan2.1-i2v-14b-480p" in str(err.value) and "python -m backend models download" in str(err.value)
    assert "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers" in str(err.value)


def test_im3d_loop_runs_end_to_end_with_a_tiny_random_video_model(tmp_path, models_dir):
    save_tiny_wan_i2v(models_dir / "wan2.1-i2v-14b-480p")
    image = _subject_png(tmp_path / "subject.png")
    stages = []
    params = R.Params(view_count=8, size=32, rounds=2, iterations=40, gaussians=500, sh_degree=0, steps=2,
                      video_size=32, strength=0.6)
    results = R.run({"image": image}, params, tmp_path / "out", lambda f, s: stages.append(s))
    report = json.loads(results["report"].read_text())
    assert report["frames"] == 9  # 8 views -> the 4k+1 frames Wan makes
    assert [r["round"] for r in report["rounds"]] == [0, 1, 2]
    assert [r.get("next_strength") for r in report["rounds"]] == [0.6, 0.42, None]
    assert any(s.startswith("generating the orbit video") for s in stages)
    assert sum(s.startswith("refining the orbit video") for s in set(stages)) == 2
    assert any("round 2" in s for s in stages)
    g = read_ply(results["gaussians"])
    assert len(g) == report["gaussians"] > 0 and torch.isfinite(g.means).all()
