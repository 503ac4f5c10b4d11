"""Wan2.1 VACE through diffusers' WanVACEPipeline: orbit frames from normal renders + a reference.

Per orbit the control video is the rendered normal orbit (Ink3D's encoding, normals mapped from
[-1, 1] to [0, 1], background black), the reference image (subject on black) is VACE's reference
image, and the prompt describes the asset. The horizontal orbit is generated first; the vertical
orbit then gets the horizontal orbit's frame 0 as an inactive (kept) VACE frame and its latents
are held to that frame's, so both orbits start from the same picture of the shared reference view.

Modes (held.held_scheduler, swapped in as the pipeline's scheduler): partial denoise encodes
the init frames with the VAE, noises them to the sigma of the `strength` point of the schedule and
runs only the remaining steps. Masked mode passes the mask to VACE (mask 1 = regenerate; the masked
pixels of the init frames are greyed out) and, at every step, resets the latents outside the mask
to the init frames' latents at the current noise level, as TIRE does. The frames returned are the
decoded latents: outside the mask they match the init frames up to the VAE's reconstruction;
callers that need the pixels exactly composite (types.composite).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..assets.mesh import Mesh
from ..errors import InputError
from ..progress import Progress, sub_progress
from ..render.conditioning import encode_normals
from .generators import check_model_memory, model_for, pick_device
from .types import GenerateOptions, Orbit, Reference, validate_modes
from .held import LatentHold, held_scheduler, scheduler_swapped, seeded_noise, start_step
from .wan_common import check_shape, latent_mask, square_reference, to_pil, vae_latents

DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = 5.0
NEGATIVE_PROMPT = "blurry, low quality, distorted, text, watermark, background clutter"


def load_pipeline(folder: Path, device: str) -> Any:
    """WanVACEPipeline from an installed model folder (diffusers layout), on `device`."""
    from diffusers import WanVACEPipeline

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        pipe = WanVACEPipeline.from_pretrained(str(folder), dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"the Wan VACE model in {folder} cannot be loaded ({type(exc).__name__}: {exc}); "
                         "check it with: python -m backend models verify") from None
    if device.startswith("cuda"):
        pipe.vae.to(torch.float32)  # the Wan VAE is unstable in bf16
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class WanVaceGenerator:
    name = "wan-vace"

    def __init__(self) -> None:
        self.pipe: Any = None

    def prepare(self, options: GenerateOptions, frames: int, size: int) -> None:
        check_shape(frames, size, self.name)
        check_model_memory(model_for(self.name, options) or "", frames, size, options)

    def generate(self, mesh: Mesh, orbits: Sequence[Orbit], reference: Reference, options: GenerateOptions,
                 progress: Progress) -> dict[str, np.ndarray]:
        from .registry import resolve

        validate_modes(orbits, options)
        n, size = len(orbits[0]), orbits[0].gbuffers.mask.shape[1]
        check_shape(n, size, self.name)
        device = pick_device(options.device)
        progress(0.0, "wan-vace: loading the model")
        if self.pipe is None:
            self.pipe = load_pipeline(resolve(model_for(self.name, options) or ""), device)
        ref_image = to_pil(square_reference(reference, size))
        frames: dict[str, np.ndarray] = {}
        for k, orbit in enumerate(orbits):
            report = sub_progress(progress, 0.05 + 0.95 * k / len(orbits), 0.05 + 0.95 * (k + 1) / len(orbits))
            control = encode_normals(orbit.gbuffers.normal, orbit.gbuffers.mask)
            init = options.init_frames.get(orbit.name) if options.init_frames else None
            mask = options.masks.get(orbit.name) if options.masks else None
            video, vace_mask = control.copy(), np.ones(control.shape[:3], dtype=np.float32)
            source = np.zeros_like(control) if init is None else init.copy()  # the frames latents are held to
            regenerate = np.ones(control.shape[:3], dtype=bool)
            if mask is not None and init is not None:
                video = np.where(mask[..., None], 0.5, init).astype(np.float32)  # VACE inpainting input
                vace_mask, regenerate = mask.astype(np.float32), mask.copy()
            shared = frames.get("horizontal") if orbit.name == "vertical" else None
            if shared is not None:  # the shared reference view: kept by VACE and held in the latents
                video[0], vace_mask[0], source[0], regenerate[0] = shared[0], 0.0, shared[0], False
            frames[orbit.name] = self._run(orbit, video, vace_mask, ref_image, source, regenerate,
                                           init is not None, options, device, report)
        progress(1.0, "wan-vace: done")
        return frames

    def _run(self, orbit: Orbit, video: np.ndarray, vace_mask: np.ndarray, ref_image: Any, source: np.ndarray,
             regenerate: np.ndarray, has_init: bool, options: GenerateOptions, device: str,
             progress: Progress) -> np.ndarray:
        pipe = self.pipe
        n, h, w = vace_mask.shape
        steps = options.steps or DEFAULT_STEPS
        start = start_step(steps, options.strength) if has_init and options.strength < 1.0 else 0
        hold, latents = None, None
        if start or not regenerate.all():
            src = encode_latents(pipe, source, ref_image, device)  # (1, C, 1 + T, h/8, w/8)
            noise = seeded_noise(src.shape, options.seed).to(src)
            if not regenerate.all():
                hold = LatentHold(src[:, :, 1:], latent_mask(regenerate).to(src), noise[:, :, 1:])
        scheduler = held_scheduler(pipe.scheduler, start, hold)
        if start:
            scheduler.set_timesteps(steps, device=device)
            sigma = float(scheduler.sigmas[0])
            latents = (1 - sigma) * src + sigma * noise
        planned = steps - start

        def on_step(p: Any, i: int, t: Any, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            progress((i + 1) / planned, f"wan-vace: {orbit.name} orbit, step {i + 1} of {planned}")
            return tensors

        with scheduler_swapped(pipe, scheduler):
            result = pipe(prompt=options.prompt, negative_prompt=options.negative_prompt or NEGATIVE_PROMPT,
                          video=[to_pil(f) for f in video],
                          mask=[to_pil(np.repeat(m[..., None], 3, -1)) for m in vace_mask],
                          reference_images=[ref_image], height=h, width=w, num_frames=n, num_inference_steps=steps,
                          guidance_scale=options.guidance if options.guidance is not None else DEFAULT_GUIDANCE,
                          generator=torch.Generator("cpu").manual_seed(options.seed), latents=latents,
                          output_type="np", callback_on_step_end=on_step,
                          callback_on_step_end_tensor_inputs=["latents"]).frames[0]
        return np.asarray(result, dtype=np.float32).clip(0, 1)


def encode_latents(pipe: Any, frames: np.ndarray, ref_image: Any, device: str) -> torch.Tensor:
    """VAE latents of the reference image followed by the frames, normalized as WanVACEPipeline
    normalizes its latents: (1, C, 1 + T, H/8, W/8)."""
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].to(device) * 2 - 1  # (1, 3, N, H, W)
    ref = torch.from_numpy(np.asarray(ref_image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None, :, None]
    return torch.cat([vae_latents(pipe.vae, x) for x in (ref.to(device) * 2 - 1, video)], dim=2)

