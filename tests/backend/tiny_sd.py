"""Tiny randomly initialised Stable Diffusion pipelines (inpainting: 9-channel UNet; text-to-image:
4-channel; VAE, CLIP text encoder, byte-level CLIP tokenizer), built from configs in code and saved
with safetensors in the diffusers layout, for tests that run the real registry, loading and
training code."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

SIDE = 32  # the UNet's native image side (sample_size 16 x the VAE's factor 2)


def tiny_clip_tokenizer():  # type: ignore[no-untyped-def]
    """A CLIP tokenizer over the 256 byte-level symbols (no merges, no download)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for word in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(word, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=24)


def _components(in_channels: int, seed: int) -> dict:  # type: ignore[type-arg]
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1, projection_dim=16,
        vocab_size=len(tokenizer), max_position_embeddings=24, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=SIDE // 2, in_channels=in_channels, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=8, sample_size=SIDE)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              steps_offset=1, num_train_timesteps=1000)
    return {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "unet": unet, "scheduler": scheduler,
            "safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


def build_tiny_sd_inpaint(folder: Path, seed: int = 0) -> Path:
    """Save a tiny StableDiffusionInpaintPipeline into `folder` (model_index.json + component folders)."""
    from diffusers import StableDiffusionInpaintPipeline

    StableDiffusionInpaintPipeline(**_components(9, seed)).save_pretrained(str(folder), safe_serialization=True)
    return folder


def build_tiny_sd(folder: Path, seed: int = 0) -> Path:
    """Save a tiny text-to-image StableDiffusionPipeline (4-channel UNet) into `folder`: what an
    SD 1.5 repository holds, loaded by refine's mv-sd stage as an img2img pipeline."""
    from diffusers import StableDiffusionPipeline

    StableDiffusionPipeline(**_components(4, seed)).save_pretrained(str(folder), safe_serialization=True)
    return folder


def isolate_models(monkeypatch, tmp_path: Path, models: Path) -> None:  # type: ignore[no-untyped-def]
    """Point the model registry at `models` only: no config file, no Hub cache, no network; LoRA
    caches under `tmp_path`."""
    import huggingface_hub.constants as hub

    monkeypatch.setenv("ORBITEX_MODELS_DIR", str(models))
    monkeypatch.setenv("ORBITEX_MODELS_CONFIG", str(tmp_path / "models.toml"))
    monkeypatch.setenv("ORBITEX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.fixture()
def env(models: Path, tmp_path: Path, monkeypatch) -> Path:  # type: ignore[no-untyped-def]
    """The registry isolated to the test module's `models` fixture."""
    isolate_models(monkeypatch, tmp_path, models)
    return models
