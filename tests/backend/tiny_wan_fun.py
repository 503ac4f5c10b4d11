"""Tiny randomly initialised Wan2.2-Fun-Control models and OrbitPainter-style LoRAs, built from
configs in code and saved with safetensors in the registry's folder layout, for tests that run the
real orbitpainter loading code (DiffSynth's from_pretrained + load_lora) in the DiffSynth interpreter.

    .venv/diffsynth/bin/python tests/backend/tiny_wan_fun.py MODELS_DIR

writes MODELS_DIR/{wan2.2-fun-a14b-control, wan2.1-t2v-1.3b-encoders, orbitpainter, orbitpainter-zero}:
the last has the same patch embeddings but all-zero LoRA deltas (lora_B = 0), so a run with it is
the base model's."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_wan import VOCAB, tiny_tokenizer  # noqa: E402

DIT = {"dim": 64, "in_dim": 52, "ffn_dim": 128, "out_dim": 16, "text_dim": 16, "freq_dim": 32, "eps": 1e-6,
       "patch_size": [1, 2, 2], "num_heads": 2, "num_layers": 2, "has_image_input": False, "has_ref_conv": True,
       "require_clip_embedding": False}
VAE = {"z_dim": 16, "dim": 8, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1}
TEXT = {"vocab": len(VOCAB), "dim": 16, "dim_attn": 16, "dim_ffn": 32, "num_heads": 2, "num_layers": 1, "num_buckets": 8}
WIDE_IN = 68  # 52 + the normal video's 16 latent channels
LORA_RANK = 4
LORA_TARGETS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "ffn.0", "ffn.2")


def _save(module: torch.nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}, str(path))


def _lora(dit: torch.nn.Module, zero: bool, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # large enough that the control and normal videos visibly steer the tiny model
    state = {"patch_embedding.weight": torch.randn(DIT["dim"], WIDE_IN, 1, 2, 2, generator=g) * 0.5,
             "patch_embedding.bias": torch.zeros(DIT["dim"])}
    for name, module in dit.named_modules():
        if isinstance(module, torch.nn.Linear) and name.startswith("blocks.") and name.split(".", 2)[2] in LORA_TARGETS:
            state[f"{name}.lora_A.default.weight"] = torch.randn(LORA_RANK, module.in_features, generator=g) * 0.3
            b = torch.randn(module.out_features, LORA_RANK, generator=g) * 0.3
            state[f"{name}.lora_B.default.weight"] = torch.zeros_like(b) if zero else b
    return state


def build(root: Path, seed: int = 0) -> None:
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.models.wan_video_text_encoder import WanTextEncoder

    from backend.models.diffsynth_variants import SizedWanVideoVAE

    torch.manual_seed(seed)
    base, encoders = root / "wan2.2-fun-a14b-control", root / "wan2.1-t2v-1.3b-encoders"
    dits = {}
    for expert in ("high_noise_model", "low_noise_model"):
        dits[expert] = WanModel(**DIT)
        _save(dits[expert], base / expert / "diffusion_pytorch_model.safetensors")
    (base / "diffsynth_models.json").write_text(json.dumps([
        {"file": "high_noise_model/diffusion_pytorch_model.safetensors", "model_name": "wan_video_dit",
         "model_class": "diffsynth.models.wan_video_dit.WanModel", "extra_kwargs": DIT}]))
    _save(WanTextEncoder(**TEXT), encoders / "models_t5_umt5-xxl-enc-bf16.safetensors")
    _save(SizedWanVideoVAE(**VAE), encoders / "Wan2.1_VAE.safetensors")
    tiny_tokenizer().save_pretrained(str(encoders / "google" / "umt5-xxl"))
    (encoders / "diffsynth_models.json").write_text(json.dumps([
        {"file": "models_t5_umt5-xxl-enc-bf16.safetensors", "model_name": "wan_video_text_encoder",
         "model_class": "diffsynth.models.wan_video_text_encoder.WanTextEncoder", "extra_kwargs": TEXT},
        {"file": "Wan2.1_VAE.safetensors", "model_name": "wan_video_vae",
         "model_class": "backend.models.diffsynth_variants.SizedWanVideoVAE", "extra_kwargs": VAE}]))
    for folder, zero in (("orbitpainter", False), ("orbitpainter-zero", True)):
        for k, expert in enumerate(("high_noise", "low_noise")):
            path = root / folder / f"{expert}_lora.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(_lora(dits[f"{expert}_model"], zero, seed + k), str(path))


if __name__ == "__main__":
    build(Path(sys.argv[1]))
