"""Wan2.1 image-to-video (diffusers WanImageToVideoPipeline) as an orbit video model.

generate: the pipeline as published, prompted for a turntable orbit (Wan is not camera-conditioned:
the cameras only fix the frame count; frame 0 is the input image's view).
refine (IM-3D's loop): the frames are VAE-encoded, noised along the flow-matching path to the
sigma where the last `strength` part of the schedule starts (x_s = (1 - s) x_0 + s * noise), and
denoised with the same image conditioning over that part, by handing the pipeline these latents
and a copy of its scheduler that starts there (held.held_scheduler, the texture generators'
mechanism).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from ..progress import Progress
from ..assets.cameras import Camera
from .video import VideoOptions
from .held import held_scheduler, scheduler_swapped, seeded_noise, start_step
from .wan_common import vae_latents


class WanI2VOrbitModel:
    def __init__(self, name: str, folder: Path, device: str) -> None:
        from diffusers import WanImageToVideoPipeline

        self.name = name
        self.device = torch.device(device)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        try:
            self.pipe = WanImageToVideoPipeline.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"model '{name}' at {folder} could not be loaded ({type(exc).__name__}: {exc}); "
                             f"check it with: python -m backend models verify {name}") from None
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.to(self.device)
        self.temporal = int(self.pipe.vae_scale_factor_temporal)
        patch = self.pipe.transformer.config.patch_size
        self.multiple = int(self.pipe.vae_scale_factor_spatial * patch[1])

    def frame_count(self, view_count: int) -> int:
        t = self.temporal
        return max(1, -(-(view_count - 1) // t) * t + 1)

    def _size(self, options: VideoOptions) -> int:
        return max(self.multiple, options.size // self.multiple * self.multiple)

    def _check(self, cameras: Sequence[Camera]) -> None:
        if len(cameras) != self.frame_count(len(cameras)):
            raise InputError(f"{self.name} makes {self.temporal}k+1 frames; got {len(cameras)} cameras "
                             f"(use {self.frame_count(len(cameras))})")

    def _run(self, image: np.ndarray, frames: int, options: VideoOptions, progress: Progress, stage: str,
             latents: torch.Tensor | None = None) -> np.ndarray:
        from PIL import Image

        size = self._size(options)
        pil = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).resize((size, size), Image.LANCZOS)
        steps = options.steps

        def on_step(pipe, i, t, kwargs):  # type: ignore[no-untyped-def]
            progress((i + 1) / max(len(pipe.scheduler.timesteps), 1), stage)
            return kwargs

        out = self.pipe(image=pil, prompt=options.prompt, negative_prompt=options.negative_prompt, height=size,
                        width=size, num_frames=frames, num_inference_steps=steps, guidance_scale=options.guidance,
                        generator=torch.Generator("cpu").manual_seed(options.seed), latents=latents,
                        output_type="np", callback_on_step_end=on_step)
        return np.asarray(out.frames[0], dtype=np.float32)

    @staticmethod
    def _resize(frames: np.ndarray, cameras: Sequence[Camera]) -> np.ndarray:
        import cv2

        w, h = cameras[0].width, cameras[0].height
        if frames.shape[1:3] == (h, w):
            return frames.astype(np.float32)
        return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)

    def generate(self, image: np.ndarray, cameras: Sequence[Camera], options: VideoOptions,
                 progress: Progress) -> np.ndarray:
        self._check(cameras)
        frames = self._run(image, len(cameras), options, progress, f"generating the orbit video ({self.name})")
        return self._resize(frames, cameras)

    @torch.no_grad()
    def encode(self, frames: np.ndarray, size: int) -> torch.Tensor:
        """Normalized VAE latents (1, C, T', h, w) of frames (N, H, W, 3) in [0, 1]."""
        import torch.nn.functional as F

        video = torch.as_tensor(frames, dtype=torch.float32).permute(3, 0, 1, 2)[None]  # (1, 3, N, H, W)
        video = F.interpolate(video[0].permute(1, 0, 2, 3), size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False).permute(1, 0, 2, 3)[None]
        return vae_latents(self.pipe.vae, (video * 2 - 1).to(self.device))

    def refine(self, frames: np.ndarray, image: np.ndarray, cameras: Sequence[Camera], strength: float,
               options: VideoOptions, progress: Progress) -> np.ndarray:
        self._check(cameras)
        if not 0.0 < strength <= 1.0:
            raise InputError(f"refinement strength must be in (0, 1], got {strength}")
        if frames.shape[0] != len(cameras):
            raise InputError(f"{frames.shape[0]} frames for {len(cameras)} cameras")
        size = self._size(options)
        x0 = self.encode(frames, size)
        scheduler = held_scheduler(self.pipe.scheduler, start_step(options.steps, strength))
        scheduler.set_timesteps(options.steps, device=self.device)
        sigma = float(scheduler.sigmas[0])
        latents = (1.0 - sigma) * x0 + sigma * seeded_noise(x0.shape, options.seed).to(x0.device)
        with scheduler_swapped(self.pipe, scheduler):
            out = self._run(image, len(cameras), options, progress,
                            f"refining the orbit video ({self.name}, strength {strength:.2f})", latents)
        return self._resize(out, cameras)
