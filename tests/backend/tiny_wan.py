"""A tiny randomly initialised Wan VACE pipeline, built from configs in code and saved with
safetensors in the diffusers layout, for tests that run the real registry and loading code."""
from __future__ import annotations

from pathlib import Path

import torch

VOCAB = ["<pad>", "</s>", "<unk>", "this", "is", "a", "3d", "model", "blurry", "low", "quality", "distorted",
         "text", "watermark", "background", "clutter", ",", "vase", "painted"]


def tiny_tokenizer():  # type: ignore[no-untyped-def]
    """A word-level fast tokenizer from an in-code vocabulary (no download)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=32)


def build_tiny_wan_vace(folder: Path, seed: int = 0) -> Path:
    """Save a tiny WanVACEPipeline into `folder` (model_index.json + component folders)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanVACEPipeline, WanVACETransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=16, out_channels=16,
        text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32, vace_layers=[0], vace_in_channels=96)
    vae = AutoencoderKLWan(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(VOCAB), d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                               num_heads=2, relative_attention_num_buckets=8,
                                               relative_attention_max_distance=16, pad_token_id=0, eos_token_id=1))
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                        num_train_timesteps=1000)
    pipe = WanVACEPipeline(tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                           transformer=transformer)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder
