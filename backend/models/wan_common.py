"""What every Wan-family adapter shares (diffusers' VACE and I2V, DiffSynth's Fun-Control):
frame/size checks, images in and out, pixel masks as latent masks, Wan VAE latents. Starting at a
strength and holding latents, which the Stable Diffusion adapters share too: backend/models/held.py.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .types import Reference


def check_shape(frames: int, size: int, name: str) -> None:
    """Wan's VAE compresses time by 4 after the first frame and space by 8 (then 2x2 patches)."""
    if (frames - 1) % 4 != 0:
        raise InputError(f"the {name} generator needs --frames of the form 4k + 1 (e.g. 61, 81, 121), not {frames}")
    if size % 16 != 0:
        raise InputError(f"the {name} generator needs --size divisible by 16 (e.g. 512, 768), not {size}")


def to_pil(array: np.ndarray) -> Any:
    """(H, W, 3) float in [0, 1] -> PIL image (the pipelines' input type)."""
    from PIL import Image

    return Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8))


def from_pil(images: Any) -> np.ndarray:
    """A list of PIL images -> (N, H, W, 3) float32 in [0, 1]."""
    return np.stack([np.asarray(f, dtype=np.float32) / 255.0 for f in images])


def square_reference(reference: Reference, size: int) -> np.ndarray:
    """The reference image fitted into a size x size square on black, as the video models take it."""
    from .reference import ReferenceImage, fit_to_square

    rgb, _ = fit_to_square(ReferenceImage(reference.image, reference.mask, True), size)
    return rgb


def latent_mask(mask: np.ndarray, reference_slots: int = 0) -> torch.Tensor:
    """Pixel mask (N, H, W), True = regenerate -> latent mask (1, 1, slots + T, H/8, W/8): a latent
    regenerates when any pixel of its 8x8 block in any of its frames does (frame 0 alone, then
    groups of 4, as the Wan VAE's causal time compression). Leading reference slots (VACE's
    reference image latents) always regenerate."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]  # (1, 1, N, H, W)
    first, rest = m[:, :, :1], m[:, :, 1:]
    t = (rest.shape[2] + 3) // 4
    if rest.shape[2] % 4:
        rest = torch.cat([rest, rest[:, :, -1:].expand(-1, -1, 4 * t - rest.shape[2], -1, -1)], dim=2)
    groups = rest.reshape(1, 1, t, 4, *rest.shape[3:]).amax(3) if t else rest
    seq = torch.nn.functional.max_pool3d(torch.cat([first, groups], dim=2), kernel_size=(1, 8, 8))
    return torch.cat([torch.ones_like(seq[:, :, :1]).expand(-1, -1, reference_slots, -1, -1), seq], dim=2)


@torch.no_grad()
def vae_latents(vae: Any, video: torch.Tensor) -> torch.Tensor:
    """A diffusers Wan VAE's latents of `video` (1, 3, N, H, W) in [-1, 1], normalized as the Wan
    pipelines normalize them: (mode - latents_mean) / latents_std, float32."""
    z = vae.encode(video.to(vae.dtype)).latent_dist.mode().float()
    mean = torch.tensor(vae.config.latents_mean, device=z.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=z.device).view(1, -1, 1, 1, 1)
    return (z - mean) / std


@torch.no_grad()
def vae_frames(vae: Any, latents: torch.Tensor) -> np.ndarray:
    """Inverse of `vae_latents`: (N, H, W, 3) float32 in [0, 1]."""
    mean = torch.tensor(vae.config.latents_mean, device=latents.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=latents.device).view(1, -1, 1, 1, 1)
    video = vae.decode((latents * std + mean).to(vae.dtype)).sample  # (1, 3, N, H, W) in [-1, 1]
    return ((video[0].permute(1, 2, 3, 0).float().cpu().numpy() + 1) / 2).clip(0, 1)
