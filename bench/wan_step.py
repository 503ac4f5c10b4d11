"""Benchmark: one denoising step of the full-size video transformers with random weights (bf16).

    python bench/wan_step.py [--frames 61] [--size 512] [--model vace-1.3b|fun-a14b|both] [--repeats 3]

A step is what the generators run per scheduler step: two transformer forwards (with and without
the prompt: classifier-free guidance) on the latent video of `frames` x `size`^2 (Wan's VAE: time
/4 after the first frame, space /8; 2x2 patches). Models, with the published configs:
  vace-1.3b  Wan2.1 VACE 1.3B (diffusers WanVACETransformer3DModel: 30 layers x 1536, VACE blocks
             every 5th layer on 96 control channels) - the wan-vace generator
  fun-a14b   one Wan2.2-Fun-A14B-Control expert as OrbitPainter widens it (40 layers x 5120, 68 input
             channels: latents + control + mask/image + normal latents; diffusers
             WanTransformer3DModel with in_channels=68, the same compute as DiffSynth's WanModel)
The baseline is the 1.3B step in the same process (the ratio is the 14B step's cost in 1.3B steps).
Needs a CUDA GPU (the 14B expert is 28 GB in bf16).
"""
from __future__ import annotations

import argparse
import time

import torch


def latent_shape(frames: int, size: int) -> tuple[int, int, int]:
    return (frames - 1) // 4 + 1, size // 8, size // 8


def build(name: str) -> torch.nn.Module:
    from diffusers import WanTransformer3DModel, WanVACETransformer3DModel

    with torch.device("cuda"):
        if name == "vace-1.3b":
            model = WanVACETransformer3DModel(num_attention_heads=12, attention_head_dim=128, in_channels=16,
                                              out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960,
                                              num_layers=30, vace_layers=[0, 5, 10, 15, 20, 25], vace_in_channels=96)
        else:
            model = WanTransformer3DModel(num_attention_heads=40, attention_head_dim=128, in_channels=68,
                                          out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40)
    return model.to(torch.bfloat16).eval()


@torch.no_grad()
def step_seconds(name: str, frames: int, size: int, repeats: int) -> float:
    model = build(name)
    t, h, w = latent_shape(frames, size)
    channels = 16 if name == "vace-1.3b" else 68
    x = torch.randn(1, channels, t, h, w, device="cuda", dtype=torch.bfloat16)
    text = torch.randn(1, 512, 4096, device="cuda", dtype=torch.bfloat16)
    timestep = torch.tensor([900.0], device="cuda")
    extra = {}
    if name == "vace-1.3b":  # VACE context: 96 channels on the latent grid (+1 reference frame)
        x = torch.randn(1, 16, t + 1, h, w, device="cuda", dtype=torch.bfloat16)
        extra["control_hidden_states"] = torch.randn(1, 96, t + 1, h, w, device="cuda", dtype=torch.bfloat16)

    def one_step() -> None:
        for _ in range(2):  # cfg: conditional and unconditional
            model(hidden_states=x, timestep=timestep, encoder_hidden_states=text, return_dict=False, **extra)

    one_step()  # warm-up (kernels, allocator)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        one_step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    del model
    torch.cuda.empty_cache()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=61)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--model", default="both", choices=["vace-1.3b", "fun-a14b", "both"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/wan_step.py needs a CUDA GPU")
    t, h, w = latent_shape(args.frames, args.size)
    tokens = t * (h // 2) * (w // 2)
    print(f"{torch.cuda.get_device_name()}: {args.frames} frames x {args.size}^2 -> latent {t}x{h}x{w}, "
          f"{tokens} tokens; one step = 2 forwards (cfg), bf16, random weights")
    names = ["vace-1.3b", "fun-a14b"] if args.model == "both" else [args.model]
    results = {name: step_seconds(name, args.frames, args.size, args.repeats) for name in names}
    base = results.get("vace-1.3b")
    for name, seconds in results.items():
        ratio = f", {seconds / base:.1f}x the 1.3B step" if base else ""
        print(f"{name:>10}: {seconds * 1000:8.1f} ms per step ({tokens / seconds:,.0f} tokens/s per step){ratio}; "
              f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
