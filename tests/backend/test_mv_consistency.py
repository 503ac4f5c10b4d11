"""refine's mv-sd consistency stage on CPU: a tiny random SD 1.5-layout model saved with safetensors,
found through the registry and loaded through from_pretrained; views tiled into grids with the
source, denoised with the held-latent scheduler; held pixels exact, free ones changed; missing
weights named with the install command. Asserts the code path, not image quality."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend.errors import InputError, MissingWeightsError  # noqa: E402
from backend.models import mv_consistency, registry  # noqa: E402
from tiny_sd import SIDE, build_tiny_sd, env, isolate_models  # noqa: E402, F401 (env: a fixture)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_tiny_sd(root / mv_consistency.DEFAULT_MODEL)
    return root


def _views(n: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    images = np.kron(rng.random((n, side // 4, side // 4, 3)), np.ones((1, 4, 4, 1))).astype(np.float32)
    free = np.zeros((n, side, side), dtype=bool)
    for i in range(1, n):
        free[i, side // 3:side // 3 + 9, side // 4 + i:side // 4 + i + 11] = True  # not aligned to latent blocks
    return images, free


def test_registered_and_verified(env: Path) -> None:
    rows = {row["name"]: row for row in registry.status_rows()}
    assert rows["sd-v1-5"]["state"].startswith("installed (models_dir")
    assert registry.verify("sd-v1-5") == []
    assert registry.get_spec("sd-v1-5").kind == mv_consistency.MODEL_KIND


def test_held_pixels_exact_free_pixels_changed(env: Path) -> None:
    images, free = _views(6, SIDE)  # the anchor + 5 views: two 2x2 grids
    stage = mv_consistency.load_consistency("mv-sd", strength=0.5, steps=8, seed=1, device="cpu")
    assert stage is not None
    out = stage.refine(images, free, anchor=0)
    assert out.shape == images.shape and out.dtype == np.float32
    held = ~free
    assert np.array_equal(out[held], images[held])  # bit for bit, the anchor included
    assert np.array_equal(out[0], images[0])
    for i in range(1, 6):
        assert np.abs(out[i][free[i]] - images[i][free[i]]).mean() > 1e-3, i
    assert [c["frames"] for c in stage.calls] == [[0, 1, 2, 3], [0, 4, 5]]
    # the held-latent scheduler was swapped in for the calls only
    assert type(stage.pipe.scheduler).__name__ == "PNDMScheduler"
    again = mv_consistency.MVConsistency(strength=0.5, steps=8, seed=1, device="cpu").refine(images, free)
    assert np.array_equal(again, out)  # seeded


def test_hold_keeps_latents_of_held_pixels(env: Path) -> None:
    """The latents of held pixels end as the grid's own clean latents (the masked update ran at every
    step), not merely the pixels composited back."""
    import torch

    from backend.models.held import LatentHold, held_scheduler, seeded_noise

    stage = mv_consistency.MVConsistency(strength=0.6, steps=10, device="cpu")
    pipe = stage.pipe
    grid = np.random.default_rng(0).random((SIDE, 2 * SIDE, 3)).astype(np.float32)
    pixels = pipe.image_processor.preprocess(grid[None], height=SIDE, width=2 * SIDE)
    with torch.no_grad():
        source = pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor
    regenerate = torch.zeros_like(source[:, :1])
    regenerate[..., :, source.shape[-1] // 2:] = 1.0
    pipe.scheduler = held_scheduler(pipe.scheduler, 0, LatentHold(source, regenerate, seeded_noise(source.shape, 0)))
    latents = pipe(prompt="", image=source, strength=0.6, num_inference_steps=10, output_type="latent",
                   generator=torch.Generator("cpu").manual_seed(0)).images
    kept = regenerate.expand_as(source) == 0
    assert torch.equal(latents[kept], source[kept])
    assert (latents[~kept] - source[~kept]).abs().mean() > 1e-3


def test_missing_weights_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_models(monkeypatch, tmp_path, tmp_path / "no-models")
    with pytest.raises(MissingWeightsError, match=r"'sd-v1-5'.*stable-diffusion-v1-5.*python -m backend models download sd-v1-5"):
        mv_consistency.load_consistency("mv-sd")
    assert mv_consistency.load_consistency("none") is None
    with pytest.raises(InputError, match="unknown consistency"):
        mv_consistency.load_consistency("mv-flux")
    with pytest.raises(InputError, match="not a Stable Diffusion text-to-image model"):
        mv_consistency.require_weights("sd-inpaint")


def test_refine_runs_the_stage_before_the_rebake(env: Path, tmp_path: Path) -> None:
    import json

    from backend.pipelines import parse_params, refine
    from backend.progress import no_progress
    from refine_helpers import can_glb, subject_png

    asset, subject = can_glb(tmp_path / "can.glb"), subject_png(tmp_path / "subject.png")
    small = {"frames": 6, "size": 32, "source_view": "0", "bake": {"voxel_res": 32}, "anchors": [30, 180]}
    runs = {}
    for stage in ("none", "mv-sd"):
        params = parse_params(refine.Params, {**small, "consistency": stage, "consistency_strength": 0.5})
        results = refine.run({"asset": asset, "subject": subject}, params, tmp_path / f"{stage}.glb", no_progress)
        runs[stage] = (json.loads(Path(results["report"]).read_text()), results)
    report, results = runs["mv-sd"]
    assert report["consistency"]["stage"] == "mv-sd" and report["consistency"]["grids"] >= 2
    assert runs["none"][0]["consistency"] == {"stage": "none"}
    from backend.assets.material import load_textured_mesh

    _, before = load_textured_mesh(asset)
    _, plain = load_textured_mesh(runs["none"][1]["glb"])
    _, after = load_textured_mesh(results["glb"])
    seen = np.abs(plain - before).max(-1) == 0  # texels the source saw: the input's, exactly, in both runs
    assert seen.mean() > 0.1 and np.array_equal(after[seen], before[seen])
    assert np.abs(after - plain).max() > 1e-3  # the stage changed what the rebake got


def test_refine_names_missing_consistency_weights_before_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.pipelines import parse_params, refine
    from backend.progress import no_progress
    from refine_helpers import can_glb, subject_png

    isolate_models(monkeypatch, tmp_path, tmp_path / "no-models")
    asset, subject = can_glb(tmp_path / "can.glb"), subject_png(tmp_path / "subject.png")
    params = parse_params(refine.Params, {"consistency": "mv-sd", "inpainter": "sd-inpaint"})
    with pytest.raises(MissingWeightsError, match=r"'sd-inpaint'.*'sd-v1-5'.*download sd-v1-5"):
        refine.run({"asset": asset, "subject": subject}, params, tmp_path / "out.glb", no_progress)
    assert not (tmp_path / "out.glb").exists() and not (tmp_path / "out_files").exists()
