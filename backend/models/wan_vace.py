"""Wan2.1 VACE through diffusers' WanVACEPipeline: orbit frames from normal renders + a reference.

Per orbit the control video is the rendered normal orbit (Ink3D's encoding, normals mapped from
[-1, 1] to [0, 1], background black), the reference image (subject on black) is VACE's reference
image, and the prompt describes the asset. The horizontal orbit is generated first; the vertical
orbit then gets the horizontal orbit's frame 0 as an inactive (kept) VACE frame, so both orbits
start from the same picture of the shared reference view, which is also copied in exactly.

Modes: partial denoise encodes the init frames with the VAE, noises them to the sigma of the
`strength` point of the schedule and runs only the remaining steps. Masked mode passes the mask
to VACE (mask 1 = regenerate; the masked pixels of the init frames are greyed out) and, at every
step, resets the latents outside the mask to the init frames' latents at the current noise level
(x <- m * x_gen + (1 - m) * x_src), as TIRE does; the decoded frames then keep the init pixels
outside the mask exactly.
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
from .generators import (GenerateOptions, Orbit, Reference, composite, model_for, pick_device,
                         validate_modes)

DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = 5.0
NEGATIVE_PROMPT = "blurry, low quality, distorted, text, watermark, background clutter"


def check_shape(frames: int, size: int, name: str = "wan-vace") -> None:
    if (frames - 1) % 4 != 0:
        raise InputError(f"the {name} generator needs --frames of the form 4k + 1 (e.g. 61, 81, 121), not {frames}")
    if size % 16 != 0:
        raise InputError(f"the {name} generator needs --size divisible by 16 (e.g. 512, 768), not {size}")


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
        self.calls: list[dict[str, Any]] = []  # what each orbit's pipeline call was given (for reports/tests)

    def generate(self, mesh: Mesh, orbits: Sequence[Orbit], reference: Reference, options: GenerateOptions,
                 progress: Progress) -> dict[str, np.ndarray]:
        from .registry import resolve

        validate_modes(orbits, options)
        n, size = len(orbits[0]), orbits[0].gbuffers.mask.shape[1]
        check_shape(n, size)
        device = pick_device(options.device)
        progress(0.0, "wan-vace: loading the model")
        if self.pipe is None:
            self.pipe = load_pipeline(resolve(model_for(self.name, options) or ""), device)
        pipe = self.pipe
        ref_image = _pil(_square(reference, size))
        frames: dict[str, np.ndarray] = {}
        for k, orbit in enumerate(orbits):
            report = sub_progress(progress, 0.05 + 0.95 * k / len(orbits), 0.05 + 0.95 * (k + 1) / len(orbits))
            control = encode_normals(orbit.gbuffers.normal, orbit.gbuffers.mask)
            keep = np.zeros(len(orbit), dtype=bool)  # frames given to VACE as inactive (kept) content
            init = options.init_frames.get(orbit.name) if options.init_frames else None
            mask = options.masks.get(orbit.name) if options.masks else None
            video, vace_mask = control.copy(), np.ones(control.shape[:3], dtype=np.float32)
            if mask is not None and init is not None:
                video = np.where(mask[..., None], 0.5, init).astype(np.float32)  # VACE inpainting input
                vace_mask = mask.astype(np.float32)
            shared = frames.get("horizontal") if orbit.name == "vertical" else None
            if shared is not None:
                video[0], vace_mask[0], keep[0] = shared[0], 0.0, True
            out = self._run(pipe, orbit, video, vace_mask, ref_image, init, mask, options, device, report)
            out = composite(out, init, mask)
            if shared is not None:
                out[0] = shared[0]
            frames[orbit.name] = out
            self.calls[-1].update(orbit=orbit.name, kept_frames=np.nonzero(keep)[0].tolist())
        progress(1.0, "wan-vace: done")
        return frames

    def _run(self, pipe: Any, orbit: Orbit, video: np.ndarray, vace_mask: np.ndarray, ref_image: Any,
             init: np.ndarray | None, mask: np.ndarray | None, options: GenerateOptions, device: str,
             progress: Progress) -> np.ndarray:
        n, h, w = vace_mask.shape
        steps = options.steps or DEFAULT_STEPS
        generator = torch.Generator("cpu").manual_seed(options.seed)
        kwargs: dict[str, Any] = dict(
            prompt=options.prompt, negative_prompt=options.negative_prompt or NEGATIVE_PROMPT,
            video=[_pil(f) for f in video], mask=[_pil(np.repeat(m[..., None], 3, -1)) for m in vace_mask],
            reference_images=[ref_image], height=h, width=w, num_frames=n, num_inference_steps=steps,
            guidance_scale=options.guidance if options.guidance is not None else DEFAULT_GUIDANCE,
            generator=generator, output_type="np",
        )
        record: dict[str, Any] = {"steps": steps, "strength": options.strength, "masked": mask is not None,
                                  "denoise_steps": 0}
        self.calls.append(record)
        done = [0]

        def on_step(p: Any, i: int, t: Any, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            done[0] += 1
            progress(done[0] / max(record["planned_steps"], 1), f"wan-vace: {orbit.name} orbit, step {done[0]}")
            if source is not None and latent_mask is not None:
                sigma = float(p.scheduler.sigmas[min(p.scheduler.step_index, len(p.scheduler.sigmas) - 1)])
                noised = (1 - sigma) * source + sigma * noise
                tensors["latents"] = latent_mask * tensors["latents"] + (1 - latent_mask) * noised
            return tensors

        source = noise = latent_mask = None
        restore = None
        if init is not None and (options.strength < 1.0 or mask is not None):
            source = _encode_latents(pipe, init, ref_image, device)  # (1, C, 1 + T, h/8, w/8)
            noise = torch.randn(source.shape, generator=torch.Generator("cpu").manual_seed(options.seed + 1)).to(source)
        if mask is not None and source is not None:
            latent_mask = _latent_mask(mask, source.shape).to(source)
        if options.strength < 1.0 and source is not None:
            t_start, restore = _truncate_schedule(pipe, steps, options.strength, device)
            record["planned_steps"] = steps - t_start
            timestep = pipe.scheduler.timesteps[t_start:t_start + 1]
            sigma = float(pipe.scheduler.sigmas[t_start])
            kwargs["latents"] = (1 - sigma) * source + sigma * noise
            record["start_sigma"], record["start_timestep"] = sigma, float(timestep[0])
        else:
            record["planned_steps"] = steps
        kwargs["callback_on_step_end"] = on_step
        kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
        try:
            result = pipe(**kwargs).frames[0]
        finally:
            if restore is not None:
                restore()
        record["denoise_steps"] = done[0]
        record["video_frame0"] = np.asarray(kwargs["video"][0], dtype=np.float32) / 255.0
        record["mask_means"] = [float(m.mean()) for m in vace_mask]
        return np.asarray(result, dtype=np.float32).clip(0, 1)


def _square(reference: Reference, size: int) -> np.ndarray:
    from .reference import ReferenceImage, fit_to_square

    rgb, _ = fit_to_square(ReferenceImage(reference.image, reference.mask, True), size)
    return rgb


def _pil(array: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8))


def _truncate_schedule(pipe: Any, steps: int, strength: float, device: str) -> tuple[int, Any]:
    """Make the pipeline's own `set_timesteps` keep only the last `strength` part of the schedule
    (timesteps and sigmas both cut, so multistep solvers see a shorter schedule that starts at the
    strength's noise level). Returns t_start and a function undoing the patch."""
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps, device=device)
    t_start = max(steps - min(int(round(steps * strength)), steps), 0)
    if t_start >= steps:
        raise InputError(f"strength {strength} leaves no denoising step of {steps}")
    original = scheduler.set_timesteps

    def truncated(num_inference_steps: int, device: Any = None, **kwargs: Any) -> None:
        original(num_inference_steps, device=device, **kwargs)
        scheduler.timesteps = scheduler.timesteps[t_start:]
        scheduler.sigmas = scheduler.sigmas[t_start:]
        scheduler.num_inference_steps = len(scheduler.timesteps)

    scheduler.set_timesteps = truncated

    def restore() -> None:
        del scheduler.set_timesteps  # back to the class method
    return t_start, restore


@torch.no_grad()
def _encode_latents(pipe: Any, frames: np.ndarray, ref_image: Any, device: str) -> torch.Tensor:
    """VAE latents of the reference image followed by the frames, normalized as WanVACEPipeline
    normalizes its latents: (1, C, 1 + T, H/8, W/8)."""
    vae = pipe.vae
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].to(device, vae.dtype) * 2 - 1  # (1, 3, N, H, W)
    ref = torch.from_numpy(np.asarray(ref_image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None, :, None]
    ref = ref.to(device, vae.dtype) * 2 - 1
    mean = torch.tensor(vae.config.latents_mean, device=device).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std, device=device).view(1, -1, 1, 1, 1)
    lat = [(vae.encode(x).latent_dist.mode().float() - mean) * inv_std for x in (ref, video)]
    return torch.cat(lat, dim=2)


def _latent_mask(mask: np.ndarray, shape: torch.Size) -> torch.Tensor:
    """Pixel mask (N, H, W) -> latent mask (1, 1, 1 + T, H/8, W/8): a latent regenerates when any
    pixel of its 8x8 block in any of its frames does (frame 0 alone, then groups of 4, as the
    Wan VAE's causal time compression); the reference slot (first) always regenerates."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]  # (1, 1, N, H, W)
    first = m[:, :, :1]
    rest = m[:, :, 1:]
    t = (rest.shape[2] + 3) // 4
    if rest.shape[2] % 4:
        rest = torch.cat([rest, rest[:, :, -1:].expand(-1, -1, 4 * t - rest.shape[2], -1, -1)], dim=2)
    groups = rest.reshape(1, 1, t, 4, *rest.shape[3:]).amax(3) if t else rest
    seq = torch.cat([first, groups], dim=2)
    seq = torch.nn.functional.max_pool3d(seq, kernel_size=(1, 8, 8))
    seq = torch.cat([torch.ones_like(seq[:, :, :1]), seq], dim=2)
    if seq.shape[2:] != shape[2:]:
        raise InputError(f"mask shape {tuple(mask.shape)} does not match the latent video {tuple(shape)}")
    return seq
