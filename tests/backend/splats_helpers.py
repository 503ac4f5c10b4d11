"""Shared fixtures for the splat and reconstruct tests: a textured GLB, a tiny random Wan I2V model."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def checker_texture(size: int = 64, cells: int = 8) -> np.ndarray:
    """A colourful (H, W, 3) uint8 texture: a checkerboard over a hue ramp."""
    y, x = np.mgrid[0:size, 0:size] / size
    check = ((np.floor(x * cells) + np.floor(y * cells)) % 2)[..., None]
    ramp = np.stack([x, y, 1 - x * y], -1)
    return ((0.25 + 0.6 * ramp) * (0.55 + 0.45 * check) * 255).astype(np.uint8)


def textured_glb(path: Path, subdivisions: int = 3, texture: np.ndarray | None = None) -> Path:
    """A textured icosphere (spherical UVs) with a slightly squashed shape, saved as GLB."""
    import trimesh
    from PIL import Image

    mesh = trimesh.creation.icosphere(subdivisions)
    mesh.vertices *= np.array([0.5, 0.4, 0.45])
    v = mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
    uv = np.stack([0.5 + np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi), 0.5 + np.arcsin(np.clip(v[:, 1], -1, 1)) / np.pi], 1)
    image = Image.fromarray(checker_texture() if texture is None else texture)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=trimesh.visual.material.PBRMaterial(baseColorTexture=image))
    mesh.export(path)
    return path


def save_tiny_wan_i2v(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised, tiny WanImageToVideoPipeline (all components built from configs in
    code, the tokenizer from an in-code vocabulary), saved with safetensors via save_pretrained."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, PreTrainedTokenizerFast,
                              UMT5Config, UMT5EncoderModel)

    torch.manual_seed(seed)
    words = ["<pad>", "</s>", "<unk>"] + ("a 3d render of the object on plain white background camera orbits 360 "
                                           "degrees around it at constant distance turntable consistent lighting").split()
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(vocab), d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                               num_heads=2, relative_attention_num_buckets=8, pad_token_id=0,
                                               eos_token_id=1, decoder_start_token_id=0))
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    image_encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=4, projection_dim=4, num_hidden_layers=2,
                                                                   num_attention_heads=2, image_size=32,
                                                                   intermediate_size=16, patch_size=4))
    image_processor = CLIPImageProcessor(crop_size={"height": 32, "width": 32}, size={"shortest_edge": 32})
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=36, out_channels=16, text_dim=16, freq_dim=32, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32, image_dim=4)
    pipe = WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                                   scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), image_processor=image_processor,
                                   image_encoder=image_encoder, transformer=transformer)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder
