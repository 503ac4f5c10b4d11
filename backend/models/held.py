"""Starting a diffusion at a strength and holding latents to a source: the one way the house does
both, for every diffusers (and DiffSynth) adapter: Wan VACE / I2V / Fun-Control, Stable Diffusion.

Both live in the scheduler, the pipeline component that owns the schedule: `held_scheduler` makes
a copy of the pipeline's scheduler (same class, same config) whose `set_timesteps` keeps only the
last `strength` part of the schedule and whose `step` resets held latents to the source latents
noised to the next noise level: x <- m * x_gen + (1 - m) * noised(x_src), TIRE's masked update.
The adapter swaps it in as the pipeline's scheduler for one call. Noising to a level follows the
scheduler's kind: flow schedulers (diffusers' UniPC with flow sigmas and FlowMatchEuler, DiffSynth's
FlowMatchScheduler; sample = (1 - sigma) * x0 + sigma * noise) by their `sigmas`; schedulers with a
DDPM noise schedule (Stable Diffusion's PNDM, DDIM, Euler, DPM-Solver: `alphas_cumprod`) by their
own `add_noise` at the next timestep, as diffusers' own 4-channel inpainting loop holds latents.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..errors import InputError


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
    """Latents held to a source during denoising: `regenerate` is 1 where the model's latents are
    kept, 0 where the source's are. Images: (1, C, h, w) latents, held whole. Videos: (1, C, T, h, w),
    held over their trailing T frames (leading reference slots, as VACE's, are the model's)."""
    source: torch.Tensor  # (1, C, h, w) or (1, C, T, h, w) clean latents to hold
    regenerate: torch.Tensor  # (1, 1, h, w) or (1, 1, T, h, w) in {0, 1}
    noise: torch.Tensor  # like `source`: the noise the held latents carry above the last level

    def apply(self, latents: torch.Tensor, noised: torch.Tensor) -> torch.Tensor:
        """`latents` with the held ones replaced by `noised` (the source at the current level)."""
        m = self.regenerate.to(latents)
        if latents.dim() == 4:
            return m * latents + (1 - m) * noised.to(latents)
        t = self.source.shape[2]
        held = m * latents[:, :, -t:] + (1 - m) * noised.to(latents)
        return torch.cat([latents[:, :, :latents.shape[2] - t], held], dim=2)


def _is_flow(scheduler: Any) -> bool:
    config = getattr(scheduler, "config", None)
    return not hasattr(scheduler, "alphas_cumprod") or bool(getattr(config, "use_flow_sigmas", False))


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
        noised = self._held_source(hold, index + 1)
        if isinstance(out, torch.Tensor):
            return hold.apply(out, noised)
        if isinstance(out, tuple):
            return (hold.apply(out[0], noised), *out[1:])
        out.prev_sample = hold.apply(out.prev_sample, noised)
        return out

    def _held_source(self, hold: LatentHold, following: int) -> torch.Tensor:
        """The source latents at the noise level of step `following` (clean after the last step)."""
        if _is_flow(self):
            sigma = float(self.sigmas[following]) if following < len(self.sigmas) else 0.0
            return (1 - sigma) * hold.source + sigma * hold.noise.to(hold.source)
        if following >= len(self.timesteps):
            return hold.source
        return self.add_noise(hold.source, hold.noise.to(hold.source),  # type: ignore[attr-defined]
                              self.timesteps[following:following + 1].to(hold.source.device))


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


@contextmanager
def scheduler_swapped(pipe: Any, scheduler: Any) -> Iterator[Any]:
    """Inside the block `pipe` runs with `scheduler` (a `held_scheduler` copy); its own scheduler
    is back afterwards, after an error or a cancel too."""
    original = pipe.scheduler
    pipe.scheduler = scheduler
    try:
        yield scheduler
    finally:
        pipe.scheduler = original


def seeded_noise(shape: torch.Size | tuple[int, ...], seed: int) -> torch.Tensor:
    """Noise for the held latents (and a partial start), from its own seed on the CPU."""
    return torch.randn(tuple(shape), generator=torch.Generator("cpu").manual_seed(seed + 1))
