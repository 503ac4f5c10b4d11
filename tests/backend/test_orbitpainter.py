"""OrbitPainter on CPU: tiny random Wan2.2-Fun-Control experts, VAE, text encoder and OrbitPainter-
style LoRAs (tiny_wan_fun.py, built in the DiffSynth interpreter), found through the registry and
loaded by the real code (DiffSynth's from_pretrained + load_lora) in the .venv/diffsynth child
process. Asserts on the generator's own output: frame counts, steps run, H/V frame-0 sharing and
masked frames held in the latents, the LoRA changing the output, progress and cancel inside the
denoising loop, the control videos in Ink3D's encoding."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend.errors import Cancelled, MissingWeightsError  # noqa: E402
from backend.models import generators  # noqa: E402
from backend.models.orbitpainter import MissingPackageError, build_request, diffsynth_python  # noqa: E402
from backend.models.types import GenerateOptions, Reference  # noqa: E402
from backend.pipelines import parse_params, texture  # noqa: E402
from backend.progress import no_progress  # noqa: E402
from texture_helpers import lathe_mesh, procedural_texture, render_reference, save_glb, write_rgba  # noqa: E402

SIZE, FRAMES, STEPS = 32, 5, 2
ROOT = Path(__file__).resolve().parents[2]
needs_diffsynth = pytest.mark.skipif(not diffsynth_python().is_file(),
                                     reason=f"no DiffSynth environment at {diffsynth_python()} (python build.py setup makes it)")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    subprocess.run([str(diffsynth_python()), str(ROOT / "tests/backend/tiny_wan_fun.py"), str(root)], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True)
    return root


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty models setup (nothing installed, no Hub)."""
    import huggingface_hub.constants as hub

    config = tmp_path / "config" / "models.toml"
    monkeypatch.setenv("ORBITEX_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("ORBITEX_MODELS_CONFIG", str(config))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return config


@pytest.fixture()
def installed(models: Path, env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORBITEX_MODELS_DIR", str(models))
    return env


@pytest.fixture(scope="module")
def asset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("asset")
    positions, faces, uvs = lathe_mesh(32, 16)
    rgb, mask = render_reference(positions, faces, uvs, procedural_texture(128), 64)
    return {"mesh": save_glb(folder / "vase.glb", positions, faces, uvs),
            "image": write_rgba(folder / "ref.png", rgb, mask)}


@pytest.fixture(scope="module")
def scene(asset: dict):  # type: ignore[no-untyped-def]
    from backend.assets.mesh import normalize
    from backend.assets.load import load_mesh
    from backend.models.reference import load_reference
    from backend.render.gbuffer import render_gbuffers

    mesh, norm = normalize(load_mesh(asset["mesh"]))
    ref = load_reference(asset["image"])
    camera, frame0 = texture.reference_camera(64, 64, norm)
    orbits = texture.orbit_gbuffers(mesh, FRAMES, SIZE, frame0, "torch", no_progress)
    return mesh, orbits, Reference(ref.rgb, ref.mask, camera, render_gbuffers(mesh, [camera], "torch"))


@pytest.fixture(scope="module")
def generator():  # type: ignore[no-untyped-def]
    gen = generators.create("orbitpainter")
    yield gen
    gen.close()


def _steps(log: list[str], orbit: str) -> list[str]:
    return [s for s in log if s.startswith(f"orbitpainter: {orbit} orbit, step")]


def test_request_has_ink3d_control_videos(scene) -> None:  # type: ignore[no-untyped-def]
    mesh, orbits, reference = scene
    request, arrays = build_request(orbits, reference, GenerateOptions(seed=4), {}, "cpu")
    assert request["orbits"] == ["horizontal", "vertical"] and request["options"]["seed"] == 4
    for orbit in orbits:
        g = orbit.gbuffers
        covered = g.mask.numpy()
        position, normal = arrays[f"{orbit.name}_position"], arrays[f"{orbit.name}_normal"]
        assert position.shape == normal.shape == (FRAMES, SIZE, SIZE, 3) and position.dtype == np.uint8
        # Ink3D: positions [-0.5, 0.5] -> [0, 1], normals [-1, 1] -> [0, 1], black off the mesh
        expect_p = np.round((g.position.numpy()[covered] + 0.5).clip(0, 1) * 255)
        expect_n = np.round((g.normal.numpy()[covered] * 0.5 + 0.5).clip(0, 1) * 255)
        assert np.abs(position[covered] - expect_p).max() <= 1 and np.abs(normal[covered] - expect_n).max() <= 1
        assert (position[~covered] == 0).all() and (normal[~covered] == 0).all()
    assert arrays["reference"].shape == (SIZE, SIZE, 3)


def test_missing_weights_fail_before_work(env: Path) -> None:
    with pytest.raises(MissingWeightsError) as err:
        generators.prepare("orbitpainter", GenerateOptions(), 61, 512)
    for name in ("orbitpainter", "wan2.2-fun-a14b-control", "wan2.1-t2v-1.3b-encoders"):
        assert name in str(err.value)


def test_missing_diffsynth_environment_says_how_to_make_it(env: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.models import registry

    models = tmp_path / "no-models"
    for name in ("orbitpainter", "wan2.2-fun-a14b-control", "wan2.1-t2v-1.3b-encoders"):  # files in place
        for pattern in registry.MODELS[name].required:
            path = models / name / pattern.replace("*", "x")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    monkeypatch.setenv("ORBITEX_DIFFSYNTH_PYTHON", str(tmp_path / "nowhere" / "python"))
    with pytest.raises(MissingPackageError, match="build.py setup"):
        generators.prepare("orbitpainter", GenerateOptions(), FRAMES, SIZE)


@needs_diffsynth
def test_frame0_shared_lora_used_and_masked_frames_held(installed: Path, scene, generator) -> None:  # type: ignore[no-untyped-def]
    mesh, orbits, reference = scene
    opts = GenerateOptions(steps=STEPS, seed=0)
    generator.prepare(opts, FRAMES, SIZE)
    log: list[str] = []
    out = generator.generate(mesh, orbits, reference, opts, lambda f, s: log.append(s))
    assert {k: v.shape for k, v in out.items()} == {"horizontal": (FRAMES, SIZE, SIZE, 3),
                                                     "vertical": (FRAMES, SIZE, SIZE, 3)}
    for orbit in ("horizontal", "vertical"):
        assert _steps(log, orbit) == [f"orbitpainter: {orbit} orbit, step {i} of {STEPS}" for i in (1, 2)]

    # masked: frame 0 kept whole, the rest regenerated. The kept frame's latents are held, so it
    # decodes the same whatever the seed; the rest follow the seed.
    init = {k: v.copy() for k, v in out.items()}
    masks = {k: np.ones(v.shape[:3], bool) for k, v in out.items()}
    for m in masks.values():
        m[0] = False
    results = [generator.generate(mesh, orbits, reference, GenerateOptions(steps=STEPS, seed=seed, init_frames=init,
                                                                           masks=masks), no_progress)
               for seed in (1, 2)]
    kept = results[0]["horizontal"][0]  # the VAE's picture of the horizontal orbit's frame 0
    assert np.abs(results[1]["horizontal"][0] - kept).max() < 1 / 255
    assert np.abs(results[0]["horizontal"][1:] - results[1]["horizontal"][1:]).mean() > 1e-3
    free = generator.generate(mesh, orbits, reference, GenerateOptions(steps=STEPS, seed=1), no_progress)
    assert np.abs(free["horizontal"][0] - out["horizontal"][0]).mean() > 1e-2  # unheld, frame 0 follows the seed
    # H/V sharing: the vertical orbit's frame 0 was held to that same picture of the horizontal one's
    assert np.abs(out["vertical"][0] - kept).max() < 1 / 255
    assert np.abs(free["vertical"][0] - out["vertical"][0]).mean() > 2e-3  # (the VAE round trip evens it out)

    # partial denoise: strength 0.5 of 4 steps runs the last 2
    log.clear()
    partial = GenerateOptions(steps=4, seed=1, init_frames=init, strength=0.5)
    generator.generate(mesh, orbits, reference, partial, lambda f, s: log.append(s))
    assert _steps(log, "horizontal") == [f"orbitpainter: horizontal orbit, step {i} of 2" for i in (1, 2)]

    # the LoRA deltas change the output: the same patch embeddings with all-zero LoRA deltas differ
    installed.parent.mkdir(parents=True, exist_ok=True)
    installed.write_text(f'[models."orbitpainter"]\npath = "{Path(os.environ["ORBITEX_MODELS_DIR"]) / "orbitpainter-zero"}"\n')
    base = generator.generate(mesh, orbits, reference, opts, no_progress)
    assert np.abs(base["horizontal"] - out["horizontal"]).mean() > 1e-3


@needs_diffsynth
def test_cancel_inside_the_denoising_loop_ends_the_child(installed: Path, scene) -> None:  # type: ignore[no-untyped-def]
    mesh, orbits, reference = scene
    gen = generators.create("orbitpainter")
    seen: list[str] = []
    pids: list[int | None] = []

    def progress(fraction: float, stage: str) -> None:
        seen.append(stage)
        pids.append(gen.child_pid)
        if "step 1 of" in stage:
            raise Cancelled("cancelled")

    with pytest.raises(Cancelled):
        gen.generate(mesh, orbits, reference, GenerateOptions(steps=4), progress)
    assert seen[-1] == "orbitpainter: horizontal orbit, step 1 of 4"
    assert gen.child_pid is None and pids[-1] is not None
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pids[-1], 0)


@needs_diffsynth
def test_texture_end_to_end_with_orbitpainter(installed: Path, asset: dict, tmp_path: Path) -> None:
    params = parse_params(texture.Params, {"generator": "orbitpainter", "frames": FRAMES, "size": SIZE,
                                           "steps": STEPS, "bake": {"texture_size": 128, "voxel_res": 32},
                                           "turntable": False})
    stages: list[str] = []
    files = texture.run({"mesh": asset["mesh"], "image": asset["image"]}, params, tmp_path / "out",
                        lambda f, s: stages.append(s))
    assert files["glb"].is_file() and files["texture"].is_file()
    assert len(_steps(stages, "horizontal")) == len(_steps(stages, "vertical")) == STEPS
    assert len(json.loads(files["views"].read_text())["frames"]) == 2 * FRAMES - 1
    assert json.loads(files["report"].read_text())["generator"] == "orbitpainter"
