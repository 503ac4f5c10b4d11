"""texture with the Wan VACE generator on CPU: a tiny randomly initialised Wan VACE saved in the
models folder layout and loaded through the real registry and from_pretrained code. Asserts on
the generator's own output (before any compositing): frame counts, steps run, the latent hold that
shares frame 0 between the orbits and keeps masked-out frames, not image quality."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend.models import generators  # noqa: E402
from backend.models.memory import InsufficientMemoryError  # noqa: E402
from backend.pipelines import parse_params, texture  # noqa: E402
from backend.models.types import GenerateOptions, Reference  # noqa: E402
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
    from backend.assets.mesh import normalize
    from backend.assets.load import load_mesh
    from backend.models.reference import load_reference
    from backend.render.gbuffer import render_gbuffers

    mesh, norm = normalize(load_mesh(asset["mesh"]))
    ref = load_reference(asset["image"])
    camera, frame0 = texture.reference_camera(64, 64, norm)
    orbits = texture.orbit_gbuffers(mesh, FRAMES, SIZE, frame0, "torch", no_progress)
    return mesh, orbits, Reference(ref.rgb, ref.mask, camera, render_gbuffers(mesh, [camera], "torch"))


def test_texture_end_to_end_with_wan_vace(env: Path, asset: dict, tmp_path: Path) -> None:
    params = parse_params(texture.Params, {"generator": "wan-vace", "frames": FRAMES, "size": SIZE, "steps": 2,
                                           "bake": {"texture_size": 128, "voxel_res": 32}})
    stages: list[str] = []
    files = texture.run({"mesh": asset["mesh"], "image": asset["image"]}, params, tmp_path / "out",
                        lambda f, s: stages.append(s))
    assert files["glb"].is_file() and files["turntable"].is_file()
    for orbit in ("horizontal", "vertical"):
        assert [s for s in stages if s.startswith(f"wan-vace: {orbit} orbit, step")] == \
            [f"wan-vace: {orbit} orbit, step {i} of 2" for i in (1, 2)]
    assert len(json.loads(files["views"].read_text())["frames"]) == 2 * FRAMES - 1


def _roundtrip(pipe, frames: np.ndarray, ref_image) -> np.ndarray:  # type: ignore[no-untyped-def]
    """What the VAE gives back for `frames` alone: the picture a fully held latent decodes to."""
    from backend.models.wan_common import vae_frames
    from backend.models.wan_vace import encode_latents

    return vae_frames(pipe.vae, encode_latents(pipe, frames, ref_image, "cpu")[:, :, 1:])


def _steps(log: list[str], orbit: str) -> int:
    return sum(s.startswith(f"wan-vace: {orbit} orbit, step") for s in log)


def test_wan_vace_holds_frame0_and_masked_latents(env: Path, asset: dict) -> None:
    from backend.models.wan_common import square_reference, to_pil

    mesh, orbits, reference = _scene(asset)
    opts = GenerateOptions(steps=4, seed=3)
    gen = generators.prepare("wan-vace", opts, FRAMES, SIZE)
    log: list[str] = []
    out = gen.generate(mesh, orbits, reference, opts, lambda f, s: log.append(s))
    assert {k: v.shape for k, v in out.items()} == {"horizontal": (FRAMES, SIZE, SIZE, 3),
                                                     "vertical": (FRAMES, SIZE, SIZE, 3)}
    assert _steps(log, "horizontal") == _steps(log, "vertical") == 4
    ref_image = to_pil(square_reference(reference, SIZE))
    # the vertical orbit's frame 0 is the horizontal one's, held in the latents (not copied in)
    shared = _roundtrip(gen.pipe, out["horizontal"][:1], ref_image)[0]
    assert np.abs(out["vertical"][0] - shared).max() < 2 / 255
    assert np.abs(out["vertical"][1:] - out["vertical"][0]).mean() > 0.01

    rng = np.random.default_rng(0)
    init = {k: rng.random(v.shape).astype(np.float32) for k, v in out.items()}
    masks = {k: np.zeros(v.shape[:3], bool) for k, v in out.items()}
    for m in masks.values():
        m[1:, 8:24, 8:24] = True  # frame 0 kept whole; the centre of the others regenerated
    log.clear()
    opts = GenerateOptions(steps=4, seed=3, init_frames=init, strength=0.5, masks=masks)
    mixed = gen.generate(mesh, orbits, reference, opts, lambda f, s: log.append(s))
    assert _steps(log, "horizontal") == _steps(log, "vertical") == 2  # strength 0.5 of 4 steps
    kept = _roundtrip(gen.pipe, init["horizontal"][:1], ref_image)[0]
    assert np.abs(mixed["horizontal"][0] - kept).max() < 2 / 255
    regen = masks["horizontal"]
    assert np.abs(mixed["horizontal"][regen] - init["horizontal"][regen]).mean() > 0.05
    assert np.abs(mixed["vertical"][0] - _roundtrip(gen.pipe, mixed["horizontal"][:1], ref_image)[0]).max() < 2 / 255


def test_large_model_on_cpu_is_refused_unless_forced(env: Path, asset: dict, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORBITEX_CPU_MODEL_LIMIT_GB", "0.00001")
    params = parse_params(texture.Params, {"generator": "wan-vace", "frames": FRAMES, "size": SIZE, "device": "cpu"})
    with pytest.raises(InsufficientMemoryError, match="--force-cpu"):
        texture.run({"mesh": asset["mesh"], "image": asset["image"]}, params, tmp_path / "o.glb", no_progress)
    assert not (tmp_path / "o_files").exists()
    generators.prepare("wan-vace", GenerateOptions(device="cpu", force_cpu=True), FRAMES, SIZE)
