"""What every Wan-family adapter shares (diffusers' VACE and I2V, DiffSynth's Fun-Control):
frame/size checks, images in and out, pixel masks as latent masks, and the one way to start at
a strength and hold latents.

Starting at a strength and holding latents both live in the scheduler, the pipeline component
that owns the schedule: `held_scheduler` makes a copy of the pipeline's scheduler (same class,
same config) whose `set_timesteps` keeps only the last `strength` part of the schedule and whose
`step` resets held latents to the source latents noised to the next noise level
(x <- m * x_gen + (1 - m) * ((1 - sigma) * x_src + sigma * noise), TIRE's masked update). The
adapter swaps it in as the pipeline's scheduler for one call. Works with diffusers' flow
schedulers (UniPC with flow sigmas, FlowMatchEuler) and DiffSynth's FlowMatchScheduler: all keep
`timesteps` and `sigmas` (sample = (1 - sigma) * x0 + sigma * noise) and step from one to the next.
"""
from __future__ import annotations

from dataclasses import dataclass
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


def start_step(steps: int, strength: float) -> int:
    """Index of the first step run when starting at `strength` (the last round(steps * strength)
    steps are run, as diffusers' img2img pipelines do)."""
    if not 0.0 < strength <= 1.0:
        raise InputError(f"strength must be in (0, 1], got {strength}")
    start = steps - min(int(round(steps * strength)), steps)
    if start >= steps:
        raise InputError(f"strength {strength} leaves no denoising step of {steps}")
    return start


@dataclass
class LatentHold:
    """Latents held to a source during denoising: `regenerate` (broadcastable to the trailing
    frames of the latents) is 1 where the model's latents are kept, 0 where the source is."""
    source: torch.Tensor  # (1, C, T, h, w) clean latents of the frames to hold
    regenerate: torch.Tensor  # (1, 1, T, h, w) in {0, 1}
    noise: torch.Tensor  # like `source`: the noise the held latents carry at sigma > 0

    def apply(self, latents: torch.Tensor, sigma: float) -> torch.Tensor:
        t = self.source.shape[2]
        src = self.source.to(latents)
        noised = (1 - sigma) * src + sigma * self.noise.to(latents)
        m = self.regenerate.to(latents)
        held = m * latents[:, :, -t:] + (1 - m) * noised
        return torch.cat([latents[:, :, :latents.shape[2] - t], held], dim=2)  # leading reference slots stay


class _Held:
    """Mixed in front of a scheduler class by `held_scheduler`."""
    orbitex_start: int = 0
    orbitex_hold: LatentHold | None = None

    def set_timesteps(self, *args: Any, **kwargs: Any) -> Any:
        result = super().set_timesteps(*args, **kwargs)  # type: ignore[misc]
        start = self.orbitex_start
        if start:
            self.timesteps = self.timesteps[start:]
            self.sigmas = self.sigmas[start:]
            if hasattr(self, "num_inference_steps"):
                self.num_inference_steps = len(self.timesteps)
            for index in ("_step_index", "_begin_index"):
                if hasattr(self, index):
                    setattr(self, index, None)
        return result

    def step(self, model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any) -> Any:
        t = timestep.detach().float().cpu() if isinstance(timestep, torch.Tensor) else torch.tensor(float(timestep))
        index = int(torch.argmin((self.timesteps.float().cpu() - t.reshape(-1)[0]).abs()))
        out = super().step(model_output, timestep, sample, *args, **kwargs)  # type: ignore[misc]
        hold = self.orbitex_hold
        if hold is None:
            return out
        sigma = float(self.sigmas[index + 1]) if index + 1 < len(self.sigmas) else 0.0
        if isinstance(out, torch.Tensor):
            return hold.apply(out, sigma)
        if isinstance(out, tuple):
            return (hold.apply(out[0], sigma), *out[1:])
        out.prev_sample = hold.apply(out.prev_sample, sigma)
        return out


_HELD_CLASSES: dict[type, type] = {}


def held_scheduler(scheduler: Any, start: int = 0, hold: LatentHold | None = None) -> Any:
    """A copy of `scheduler` (same class and settings) that runs the schedule from step `start`
    and holds `hold`'s latents after every step. Swap it in as the pipeline's scheduler."""
    base = type(scheduler)
    cls = _HELD_CLASSES.get(base)
    if cls is None:
        cls = _HELD_CLASSES[base] = type(f"Held{base.__name__}", (_Held, base), {})
    if hasattr(scheduler, "config") and hasattr(cls, "from_config"):  # a diffusers scheduler
        held = cls.from_config(scheduler.config)
    else:  # DiffSynth's FlowMatchScheduler: plain attributes
        held = cls.__new__(cls)
        held.__dict__.update(scheduler.__dict__)
    held.orbitex_start, held.orbitex_hold = start, hold
    return held


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


def seeded_noise(shape: torch.Size | tuple[int, ...], seed: int) -> torch.Tensor:
    """Noise for the held latents (and a partial start), from its own seed on the CPU."""
    return torch.randn(tuple(shape), generator=torch.Generator("cpu").manual_seed(seed + 1))
