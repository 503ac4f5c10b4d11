"""Adapters from real 3D latent flow models to the `LatentPrior` interface (guidance.py).

Both work on a dense 64^3 occupancy stage with a 16^3 x 8 latent: TRELLIS's sparse-structure
VAE + flow model and Direct3D-S2's dense VAE + DiT. They load only when the user has installed
the package and the weights (the weights registry finds them: `models list|verify|download`
know them as trellis-image-large and direct3d-s2; nothing is downloaded here); otherwise
`MissingWeightsError` says what is missing and how to install it. Sampling is unconditional (the models' zero condition,
as used for classifier-free guidance): the front latent is what steers them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import MissingWeightsError

TRELLIS_MODEL = "trellis-image-large"
TRELLIS_CKPTS = ("ckpts/ss_enc_conv3d_16l8_fp16", "ckpts/ss_dec_conv3d_16l8_fp16", "ckpts/ss_flow_img_dit_L_16l8_fp16")
TRELLIS_PACKAGE = ("the TRELLIS package (git clone https://github.com/microsoft/TRELLIS and follow its setup.sh; "
                   "needs a CUDA GPU)")
D3S2_MODEL = "direct3d-s2"
D3S2_SUBFOLDER = "direct3d-s2-v-1-1"
D3S2_PACKAGE = ("the Direct3D-S2 package (git clone https://github.com/DreamTechAI/Direct3D-S2 && pip install -e .; "
                "needs a CUDA GPU)")


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _require(engine: str, package: str, importable: bool, model: str) -> Path:
    """The model's folder from the weights registry; one MissingWeightsError naming everything
    missing (the package and/or the weights) with how to install each."""
    from ..models.registry import resolve

    problems = [] if importable else [f"the {engine} engine needs {package}"]
    folder = None
    try:
        folder = resolve(model)
    except MissingWeightsError as exc:
        problems.append(f"the {engine} engine needs its weights: {exc}")
    if problems:
        raise MissingWeightsError("; ".join(problems))
    assert folder is not None
    return folder


class TrellisPrior:
    """TRELLIS sparse-structure stage: occupancy 64^3 <-> latent 8 x 16^3, rectified flow DiT."""

    name = "trellis"
    grid = 64
    latent_shape = (8, 16, 16, 16)
    # TRELLIS voxel grids are Z-up; scans (glTF) are Y-up: grid axes (x, y, z) = scan (x, -z, y)
    scan_to_grid = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])

    def __init__(self, rescale_t: float = 3.0) -> None:
        try:
            from trellis import models as trellis_models
        except ImportError:
            trellis_models = None
        folder = _require("trellis", TRELLIS_PACKAGE, trellis_models is not None, TRELLIS_MODEL)
        prefixes = [str(folder / ckpt) for ckpt in TRELLIS_CKPTS]
        self.device = _device()
        self.encoder, self.decoder, self.flow = (trellis_models.from_pretrained(p).eval().to(self.device)
                                                 for p in prefixes)
        if self.device.type == "cpu":
            for m in (self.encoder, self.decoder, self.flow):
                if hasattr(m, "convert_to_fp32"):
                    m.convert_to_fp32()
        self.cond = torch.zeros(1, 1374, self.flow.cond_channels, device=self.device)  # DINOv2-L tokens, zeroed
        self.rescale_t = rescale_t

    @torch.no_grad()
    def encode(self, sdf: torch.Tensor) -> torch.Tensor:
        occ = (sdf < 0).float()[None, None].to(self.device)
        return self.encoder(occ, sample_posterior=False)

    def timesteps(self, steps: int) -> Sequence[float]:
        t = np.linspace(1.0, 0.0, steps + 1)
        return list(self.rescale_t * t / (1 + (self.rescale_t - 1) * t))

    @torch.no_grad()
    def velocity(self, x: torch.Tensor, t: float) -> torch.Tensor:
        return self.flow(x, torch.tensor([1000.0 * t], device=x.device), self.cond).float()

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return -self.decoder(latent)[0, 0].float()  # occupancy logits > 0 inside -> SDF-like < 0 inside


class Direct3DS2Prior:
    """Direct3D-S2 dense stage: occupancy 64^3 <-> latent via DenseShapeVAE, flow-matching DiT."""

    name = "direct3d-s2"
    grid = 64
    scan_to_grid = np.eye(3)

    def __init__(self) -> None:
        try:
            from direct3d_s2.utils import instantiate_from_config
            from omegaconf import OmegaConf
            importable = True
        except ImportError:
            importable = False
        folder = _require("direct3d-s2", D3S2_PACKAGE, importable, D3S2_MODEL)
        config, ckpt = folder / D3S2_SUBFOLDER / "config.yaml", folder / D3S2_SUBFOLDER / "model_dense.ckpt"
        cfg = OmegaConf.load(config)
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        self.device = _device()
        self.vae = instantiate_from_config(cfg.dense_vae)
        self.vae.load_state_dict(state["vae"], strict=True)
        self.dit = instantiate_from_config(cfg.dense_dit)
        self.dit.load_state_dict(state["dit"], strict=True)
        self.vae, self.dit = self.vae.eval().to(self.device), self.dit.eval().to(self.device)
        self.scheduler = instantiate_from_config(cfg.dense_scheduler)
        conditioner = instantiate_from_config(cfg.dense_image_encoder).to(self.device)
        with torch.no_grad():  # the zero condition has the shape of a real image's tokens
            self.cond = torch.zeros_like(conditioner(torch.zeros(1, 3, 518, 518, device=self.device)))
        del conditioner
        self.latent_shape = tuple(self.dit.latent_shape)

    @torch.no_grad()
    def encode(self, sdf: torch.Tensor) -> torch.Tensor:
        occ = (sdf < 0).float()[None, None].to(self.device)
        z, _ = self.vae.encode({"dense_index": occ}, sample_posterior=False)
        return (z - self.vae.latents_shift) * self.vae.latents_scale

    def timesteps(self, steps: int) -> Sequence[float]:
        self.scheduler.set_timesteps(steps, device=self.device)
        return [float(s) for s in self.scheduler.sigmas]

    @torch.no_grad()
    def velocity(self, x: torch.Tensor, t: float) -> torch.Tensor:
        step = torch.tensor([t * self.scheduler.config.num_train_timesteps], dtype=x.dtype, device=x.device)
        return self.dit(x=x, t=step, cond=self.cond).float()

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return -self.vae.decoder(latent / self.vae.latents_scale + self.vae.latents_shift)[0, 0].float()


PRIORS = {"trellis": TrellisPrior, "direct3d-s2": Direct3DS2Prior}


def load_prior(engine: str):  # -> LatentPrior
    return PRIORS[engine]()
