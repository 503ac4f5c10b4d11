"""Front-partial flow guidance (Consistent3DGen Eq. 8-9) over a 3D latent flow model.

    x_{t-1} = x_t - dt * (eps(x_t, t) + lambda * (x_t * M - x_fg))

eps is the model's flow prediction, M the mask of latent cells the front touches and x_fg the
front's latent (encoded front band, masked). The guidance term is taken implicitly (solved for
x_{t-1}), which has the same fixed point as the explicit update and stays stable for any lambda:
as lambda grows the masked latents are pinned to the front latent while the others follow the
model's flow.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import torch

from ..progress import Progress, no_progress


class LatentPrior(Protocol):
    """What guided completion needs from a 3D latent flow model (Direct3D-S2, TRELLIS, or a test model)."""

    name: str
    grid: int  # side of the dense SDF/occupancy grid the encoder takes and the decoder returns
    latent_shape: tuple[int, int, int, int]  # (C, r, r, r)

    def encode(self, sdf: torch.Tensor) -> torch.Tensor:
        """(grid, grid, grid) SDF (< 0 inside, in [-1, 1]) -> (1, C, r, r, r) latent."""
        ...

    def timesteps(self, steps: int) -> Sequence[float]:
        """Decreasing times from noise (1) to data (0), steps + 1 values."""
        ...

    def velocity(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """eps(x_t, t): the flow prediction with x_{t-dt} = x_t - dt * eps."""
        ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(1, C, r, r, r) latent -> (grid, grid, grid) SDF-like field, < 0 inside."""
        ...


def latent_mask(band: torch.Tensor, latent_shape: Sequence[int]) -> torch.Tensor:
    """(1, 1, r, r, r) float mask of latent cells whose block of the band grid holds front (band < 0)."""
    r = latent_shape[-1]
    inside = (band < 0).float()[None, None]
    return (torch.nn.functional.adaptive_max_pool3d(inside, r) > 0).float()


def guided_sample(prior: LatentPrior, x_fg: torch.Tensor, mask: torch.Tensor, guidance: float,
                  steps: int = 25, generator: torch.Generator | None = None, x_init: torch.Tensor | None = None,
                  progress: Progress = no_progress) -> torch.Tensor:
    """Run the guided flow from noise (or `x_init`) to a latent; `x_fg` is already masked."""
    x = x_init.clone() if x_init is not None else torch.randn(
        (1, *prior.latent_shape), generator=generator, dtype=x_fg.dtype).to(x_fg.device)
    times = list(prior.timesteps(steps))
    for i, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
        dt = float(t - t_next)
        with torch.no_grad():
            eps = prior.velocity(x, t)
        x = x - dt * eps
        k = guidance * dt  # implicit step of dx/dt = -lambda (x M - x_fg)
        x = torch.where(mask > 0, (x + k * x_fg) / (1.0 + k), x)
        progress((i + 1) / (len(times) - 1), f"guided flow ({prior.name})")
    return x
