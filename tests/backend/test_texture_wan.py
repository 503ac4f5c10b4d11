"""texture with the video generators on CPU: a tiny randomly initialised Wan VACE saved in the
models folder layout and loaded through the real registry and from_pretrained code. Asserts the
code path (frame counts, H/V frame-0 sharing, masks and strengths passed on), not image quality."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend.errors import MissingWeightsError  # noqa: E402
from backend.models import generators  # noqa: E402
from backend.models.memory import InsufficientMemoryError  # noqa: E402
from backend.pipelines import parse_params, texture  # noqa: E402
from backend.progress import no_progress  # noqa: E402
from texture_helpers import lathe_mesh, procedural_texture, render_reference, save_glb, write_rgba  # noqa: E402
from tiny_wan import build_tiny_wan_vace  # noqa: E402

SIZE, FRAMES = 32, 5


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_tiny_wan_vace(root / "wan2.1-vace-1.3b")
    return root


@pytest.fixture()
def env(models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants as hub

    monkeypatch.setenv("ORBITEX_MODELS_DIR", str(models))
    monkeypatch.setenv("ORBITEX_MODELS_CONFIG", str(tmp_path / "models.toml"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return models


@pytest.fixture(scope="module")
def asset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("asset")
    positions, faces, uvs = lathe_mesh(32, 16)
    rgb, mask = render_reference(positions, faces, uvs, procedural_texture(128), 64)
    return {"mesh": save_glb(folder / "vase.glb", positions, faces, uvs),
            "image": write_rgba(folder / "ref.png", rgb, mask)}


def _scene(asset: dict):  # type: ignore[no-untyped-def]
    from backend.assets.mesh import load_mesh, normalize
    from backend.models.reference import load_reference
    from backend.render.gbuffer import render_gbuffers

    mesh, norm = normalize(load_mesh(asset["mesh"]))
    ref = load_reference(asset["image"])
    camera, frame0 = texture.reference_camera(64, 64, norm)
    orbits = texture.orbit_gbuffers(mesh, FRAMES, SIZE, frame0, "torch", no_progress)
    return mesh, orbits, generators.Reference(ref.rgb, ref.mask, camera, render_gbuffers(mesh, [camera], "torch"))


def test_texture_end_to_end_with_wan_vace(env: Path, asset: dict, tmp_path: Path) -> None:
    params = parse_params(texture.Params, {"generator": "wan-vace", "frames": FRAMES, "size": SIZE, "steps": 2,
                                           "texture_size": 128, "voxel_res": 32})
    files = texture.run({"mesh": asset["mesh"], "image": asset["image"]}, params, tmp_path / "out", no_progress)
    assert files["glb"].is_file() and files["turntable"].is_file()
    report = json.loads(files["report"].read_text())
    calls = report["generator_calls"]
    assert [c["orbit"] for c in calls] == ["horizontal", "vertical"]
    assert calls[0]["kept_frames"] == [] and calls[1]["kept_frames"] == [0]
    assert calls[1]["mask_means"][0] == 0.0 and calls[1]["mask_means"][1] == 1.0  # VACE keeps frame 0 only
    assert all(c["denoise_steps"] == 2 for c in calls)
    assert len(json.loads(files["views"].read_text())["frames"]) == 2 * FRAMES - 1


def test_wan_vace_shares_frame0_and_passes_masks_and_strength(env: Path, asset: dict) -> None:
    mesh, orbits, reference = _scene(asset)
    gen = generators.create("wan-vace")
    opts = generators.GenerateOptions(steps=4, seed=3)
    generators.prepare("wan-vace", opts, FRAMES, SIZE)
    out = gen.generate(mesh, orbits, reference, opts, no_progress)
    assert {k: v.shape for k, v in out.items()} == {"horizontal": (FRAMES, SIZE, SIZE, 3),
                                                     "vertical": (FRAMES, SIZE, SIZE, 3)}
    assert np.array_equal(out["vertical"][0], out["horizontal"][0])
    assert np.allclose(gen.calls[1]["video_frame0"], out["horizontal"][0], atol=1 / 255)  # given to VACE as kept
    rng = np.random.default_rng(0)
    init = {k: rng.random(v.shape).astype(np.float32) for k, v in out.items()}
    masks = {k: np.zeros(v.shape[:3], bool) for k, v in out.items()}
    for m in masks.values():
        m[:, 8:24, 8:24] = True
    gen.calls.clear()
    opts = generators.GenerateOptions(steps=4, seed=3, init_frames=init, strength=0.5, masks=masks)
    mixed = gen.generate(mesh, orbits, reference, opts, no_progress)
    for call in gen.calls:
        assert call["strength"] == 0.5 and call["denoise_steps"] == 2 and call["masked"]
        assert 0.0 < call["start_sigma"] < 1.0
        assert call["mask_means"][1:] == [0.25] * (FRAMES - 1)
    keep = ~masks["horizontal"]
    assert np.array_equal(mixed["horizontal"][keep], init["horizontal"][keep])
    assert np.array_equal(mixed["vertical"][0], mixed["horizontal"][0])
    assert not np.allclose(mixed["horizontal"][masks["horizontal"]], init["horizontal"][masks["horizontal"]])


def test_large_model_on_cpu_is_refused_unless_forced(env: Path, asset: dict, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORBITEX_CPU_MODEL_LIMIT_GB", "0.00001")
    params = parse_params(texture.Params, {"generator": "wan-vace", "frames": FRAMES, "size": SIZE, "device": "cpu"})
    with pytest.raises(InsufficientMemoryError, match="--force-cpu"):
        texture.run({"mesh": asset["mesh"], "image": asset["image"]}, params, tmp_path / "o.glb", no_progress)
    assert not (tmp_path / "o_files").exists()
    generators.prepare("wan-vace", generators.GenerateOptions(device="cpu", force_cpu=True), FRAMES, SIZE)


def test_orbitpainter_needs_its_models_and_diffsynth(env: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError) as err:
        generators.prepare("orbitpainter", generators.GenerateOptions(), 61, 512)
    assert "wan2.2-fun-a14b-control" in str(err.value) and "orbitpainter" in str(err.value)


def test_orbitpainter_without_diffsynth_says_why() -> None:
    import importlib.util

    from backend.models.orbitpainter import MissingPackageError, require_diffsynth

    if importlib.util.find_spec("diffsynth") is not None and importlib.util.find_spec("torchvision") is not None:
        pytest.skip("diffsynth and torchvision are installed here")
    with pytest.raises(MissingPackageError, match="torchvision"):
        require_diffsynth()
