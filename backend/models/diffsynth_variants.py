"""DiffSynth model classes with sizes DiffSynth's own classes fix: named as `model_class` in a
model folder's diffsynth_models.json (see orbitpainter_run.py). Imported in the DiffSynth
interpreter only."""
from __future__ import annotations

from diffsynth.models.wan_video_vae import VideoVAE_, WanVideoVAE


class SizedWanVideoVAE(WanVideoVAE):
    """The Wan2.1 VAE (same latent normalization and tiling) with a chosen width and depth;
    WanVideoVAE itself always builds the published 96-wide network."""

    def __init__(self, z_dim: int = 16, dim: int = 96, dim_mult: tuple[int, ...] = (1, 2, 4, 4),
                 num_res_blocks: int = 2) -> None:
        super().__init__(z_dim=z_dim)
        self.model = VideoVAE_(dim=dim, z_dim=z_dim, dim_mult=list(dim_mult),
                               num_res_blocks=num_res_blocks).eval().requires_grad_(False)
