"""sd-inpaint on CPU: a tiny random SD inpainting pipeline saved in the models folder layout and
loaded through the real registry and from_pretrained code; the subject LoRA trained (finite loss,
weights moved), cached and resumed; seen pixels kept exactly; refine end to end; missing weights
named before any work. Asserts the code path, not image quality."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend.errors import Cancelled, MissingWeightsError  # noqa: E402
from backend.models import registry  # noqa: E402
from backend.pipelines import parse_params, refine  # noqa: E402
from backend.progress import no_progress  # noqa: E402
from refine_helpers import can_glb, subject_png  # noqa: E402
from tiny_sd import build_tiny_sd_inpaint, env, isolate_models  # noqa: E402, F401 (env: a fixture)

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_tiny_sd_inpaint(root / "sd-inpaint")
    return root


def _subjects() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    a = np.kron(rng.random((5, 6, 3)), np.ones((8, 8, 1))).astype(np.float32)  # 40x48 blocks
    b = np.ascontiguousarray(a[:, ::-1] * 0.5 + 0.25)
    return [a, b]


def _lora_weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    from backend.models.sd_inpaint import LORA_FILE

    return load_file(str(folder / LORA_FILE))


def test_weights_are_registered_and_verified(env: Path) -> None:
    rows = {row["name"]: row for row in registry.status_rows()}
    assert rows["sd-inpaint"]["state"].startswith("installed (models_dir")
    assert rows["cotracker3-offline"]["state"] == "missing"
    assert registry.verify("sd-inpaint") == []  # safety_checker/feature_extractor named in model_index, not needed


def test_missing_weights_are_named_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.models import cotracker, sd_inpaint

    isolate_models(monkeypatch, tmp_path, tmp_path / "no-models")
    with pytest.raises(MissingWeightsError, match=r"'sd-inpaint'.*python -m backend models download sd-inpaint"):
        sd_inpaint.require_weights()
    with pytest.raises(MissingWeightsError, match=r"cotracker3-offline.*cotracker"):
        cotracker.require_weights()
    asset = can_glb(tmp_path / "can.glb")
    subject = subject_png(tmp_path / "subject.png")
    for out, option, named in (("a.glb", {"inpainter": "sd-inpaint"}, r"'sd-inpaint'"),
                               ("b.glb", {"tracker": "cotracker"}, r"cotracker3-offline"),
                               ("c.glb", {"inpainter": "sd-inpaint", "tracker": "cotracker"},
                                r"'sd-inpaint'.*cotracker3-offline")):
        params = parse_params(refine.Params, {"frames": 8, "size": 32, "source_view": "0", **option})
        with pytest.raises(MissingWeightsError, match=named):
            refine.run({"asset": asset, "subject": subject}, params, tmp_path / out, no_progress)
    assert not any((tmp_path / f"{n}_files").exists() for n in "abc")
    assert not (tmp_path / "cache").exists()  # no LoRA training started


def test_lora_trains_caches_and_resumes(env: Path, tmp_path: Path) -> None:
    from backend.models.sd_inpaint import CHECKPOINT, LORA_META, train_subject_lora

    images = _subjects()
    seen: list[float] = []
    lora = train_subject_lora(images, "sd-inpaint", tmp_path / "a", steps=4, checkpoint_every=2, progress=seen.append)
    meta = json.loads((lora / LORA_META).read_text())
    assert len(meta["losses"]) == 4 and all(np.isfinite(meta["losses"])) and meta["resumed_from"] is None
    assert seen == [0.25, 0.5, 0.75, 1.0] and not (lora / CHECKPOINT).exists()
    weights = _lora_weights(lora)
    ups = [v for k, v in weights.items() if "lora_B" in k or "lora.up" in k]
    assert ups and all(np.abs(v).max() > 0 for v in ups)  # B starts at zero: training moved every one

    stamp = (lora / LORA_META).stat().st_mtime_ns
    again: list[float] = []
    assert train_subject_lora(images, "sd-inpaint", tmp_path / "a", steps=4, checkpoint_every=2,
                              progress=again.append) == lora
    assert again == [1.0] and (lora / LORA_META).stat().st_mtime_ns == stamp  # cache hit, nothing retrained
    other = train_subject_lora(images[:1], "sd-inpaint", tmp_path / "a", steps=1)
    assert other != lora  # other images, other key

    def cancel_after_three(fraction: float) -> None:
        if fraction >= 0.75:
            raise Cancelled("cancelled by request")

    with pytest.raises(Cancelled):
        train_subject_lora(images, "sd-inpaint", tmp_path / "b", steps=4, checkpoint_every=2,
                           progress=cancel_after_three)
    (partial,) = (tmp_path / "b").iterdir()
    assert (partial / CHECKPOINT).is_file() and not (partial / LORA_META).exists()
    resumed = train_subject_lora(images, "sd-inpaint", tmp_path / "b", steps=4, checkpoint_every=2)
    meta_b = json.loads((resumed / LORA_META).read_text())
    assert meta_b["resumed_from"] == 2 and np.allclose(meta_b["losses"], meta["losses"], rtol=1e-5)
    resumed_weights = _lora_weights(resumed)
    assert all(np.allclose(resumed_weights[k], weights[k], atol=1e-6) for k in weights)  # same as uninterrupted


def test_inpaint_keeps_seen_pixels_exactly_and_repaints_the_rest(env: Path, tmp_path: Path) -> None:
    from backend.models.inpaint import load_inpainter
    from backend.models.sd_inpaint import train_subject_lora

    rng = np.random.default_rng(0)
    image = rng.random((36, 44, 3)).astype(np.float32)  # not a multiple of 8: padded and cropped back
    mask = np.zeros((36, 44), bool)
    mask[8:24, 10:30] = True
    lora = train_subject_lora(_subjects(), "sd-inpaint", tmp_path / "loras", steps=2)
    plain = load_inpainter("sd-inpaint", strength=0.3)
    subject = load_inpainter("sd-inpaint", strength=0.3, lora=lora)
    done: list[float] = []
    out = subject.inpaint(image, mask, "a can", progress=done.append)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert np.array_equal(out[~mask], image[~mask])
    assert np.abs(out[mask] - image[mask]).mean() > 0.01
    assert 0 < subject.calls[-1]["steps"] < 30 and done[-1] == 1.0  # 30 % of the schedule, not all of it
    assert subject.prompt_for("a can") == "a photo of sks subject, a can"
    without = plain.inpaint(image, mask, "a can")
    assert np.array_equal(without[~mask], image[~mask])
    assert not np.array_equal(without[mask], out[mask])  # the LoRA changes what is painted
    assert np.array_equal(plain.inpaint(image, np.zeros_like(mask), ""), image)


def test_refine_end_to_end_with_sd_inpaint(env: Path, tmp_path: Path) -> None:
    from backend.models.sd_inpaint import LORA_META, lora_cache_dir

    asset = can_glb(tmp_path / "can.glb")
    subject = subject_png(tmp_path / "subject.png")
    params = parse_params(refine.Params, {"frames": 6, "size": 32, "source_view": "0", "bake": {"voxel_res": 32},
                                          "inpainter": "sd-inpaint", "lora_steps": 2})
    results = refine.run({"asset": asset, "subject": subject}, params, tmp_path / "a.glb", no_progress)
    report = json.loads(Path(results["report"]).read_text())
    assert report["inpainter"] == "sd-inpaint" and Path(results["glb"]).is_file()
    frames = report["progressive"]["frames"]
    assert max(f["unseen_fraction"] for f in frames.values()) > 0.1
    (lora,) = lora_cache_dir().iterdir()
    stamp = (lora / LORA_META).stat().st_mtime_ns
    refine.run({"asset": asset, "subject": subject}, params, tmp_path / "b.glb", no_progress)
    assert [p.name for p in lora_cache_dir().iterdir()] == [lora.name]
    assert (lora / LORA_META).stat().st_mtime_ns == stamp  # the second run reused the subject LoRA


def test_cotracker_queries_and_input_checks_come_before_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.errors import InputError
    from backend.models import cotracker

    q = cotracker.grid_queries(8, 12, source=3, grid_step=4)
    assert q.shape == (6, 3) and set(q[:, 0]) == {3.0}
    assert q[:, 1].tolist() == [2, 6, 10] * 2 and q[:, 2].tolist() == [2, 2, 2, 6, 6, 6]  # (frame, x, y), pixel centres
    isolate_models(monkeypatch, tmp_path, tmp_path / "no-models")
    with pytest.raises(InputError, match="frames"):
        cotracker.track_backward(np.zeros((1, 8, 8, 3), np.float32), 0, 4)
    with pytest.raises(InputError, match="out of range"):
        cotracker.track_backward(np.zeros((3, 8, 8, 3), np.float32), 5, 4)
    with pytest.raises(MissingWeightsError, match="scaled_offline|cotracker3-offline"):
        cotracker.track_backward(np.zeros((3, 8, 8, 3), np.float32), 0, 4)


def test_masked_latent_update_keeps_the_source_latents_outside_the_mask(env: Path) -> None:
    """After the last step the latents outside the (max-pooled) mask are exactly the input frame's
    own; inside they were generated. Without the update the 9-channel UNet would move them at
    30 % denoising like everywhere else."""
    import torch

    from backend.models.sd_inpaint import SDInpainter

    rng = np.random.default_rng(2)
    image = rng.random((32, 48, 3)).astype(np.float32)
    mask = np.zeros((32, 48), bool)
    mask[4:13, 5:20] = True  # latent (factor 2) rows 2-6, columns 2-9
    inpainter = SDInpainter(strength=0.3)
    final = inpainter.generate(image, mask, "", output_type="latent")
    pipe = inpainter.pipe
    with torch.no_grad():
        pixels = pipe.image_processor.preprocess(image[None], height=32, width=48)
        source = pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor
    inside = np.zeros((16, 24), bool)
    inside[2:7, 2:10] = True
    diff = (final - source).abs().amax(1)[0].numpy()
    assert diff[~inside].max() == 0.0 and diff[inside].min() > 0.0
