"""Fit Gaussians to posed images: L1 + (MS-)SSIM + mask loss (+ LPIPS when installed), with
densification on a budget, early stopping on held-out views, progress and cancellation between
iterations.

One view per iteration in shuffled epochs, Adam per parameter with the 3DGS learning rates
(positions scaled by the scene size and decayed 100x over the run), SH degree raised one step
every `sh_increase_every` iterations. Rasterizers: gsplat on CUDA (with gsplat's DefaultStrategy,
budgeted), raster_cpu on the CPU, raster_torch (the reference) anywhere; the densification
strategies share gsplat's protocol, so one loop drives either.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..errors import InputError
from ..progress import Progress, no_progress
from ..assets.cameras import Camera
from . import raster_torch
from .densify import PARAM_NAMES, CloneSplitPrune, DensifyConfig, new_edits
from .model import Gaussians
from .raster_torch import Render

RASTERIZERS = ("auto", "cpu", "torch", "gsplat")
GSPLAT_BATCH = 8  # cameras per gsplat call when rendering views
MS_SSIM_MIN_SIDE = 160  # MS-SSIM from here (5 scales: an 11 px window needs > 160 px, so 9 px at 160)


@dataclass
class FitViews:
    """Posed target images, all one size, composited over `background`."""

    cameras: Sequence[Camera]
    images: torch.Tensor  # (N, H, W, 3) float32 in [0, 1]
    masks: torch.Tensor | None = None  # (N, H, W) float32 coverage in [0, 1]
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        n = len(self.cameras)
        if n == 0:
            raise InputError("no views to fit Gaussians to")
        if self.images.ndim != 4 or self.images.shape[0] != n or self.images.shape[3] != 3:
            raise InputError(f"expected ({n}, H, W, 3) images for {n} cameras, got {tuple(self.images.shape)}")
        h, w = self.images.shape[1:3]
        if any((c.width, c.height) != (w, h) for c in self.cameras):
            raise InputError("every camera must have the images' size")
        if self.masks is not None and tuple(self.masks.shape) != (n, h, w):
            raise InputError(f"expected ({n}, {h}, {w}) masks, got {tuple(self.masks.shape)}")


@dataclass
class FitConfig:
    iterations: int = 3000
    lr_means: float = 1.6e-4  # times scene_scale, decayed to 1 % at the end
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    ssim_weight: float = 0.2  # loss = (1 - w) L1 + w (1 - SSIM)
    mask_weight: float = 0.1  # L1 between rendered alpha and the target mask
    lpips_weight: float = 0.1  # used only when LPIPS and its backbone weights are installed
    sh_degree: int = 3
    sh_increase_every: int = 1000
    densify: bool = True
    densify_config: DensifyConfig = field(default_factory=DensifyConfig)
    # early stop (with held-out views): every `eval_every` iterations (0: iterations // 20, >= 10) from
    # `min_fraction` of the run, stop once the held-out loss has not fallen by `min_improvement`
    # (relative) below its best for `patience` evaluations in a row
    eval_every: int = 0
    min_fraction: float = 0.3
    min_improvement: float = 0.005
    patience: int = 3
    scene_scale: float = 1.0  # size of the subject (thresholds and the position learning rate scale with it)
    rasterizer: str = "auto"  # auto = gsplat on CUDA when installed, raster_cpu on the CPU
    device: str = "auto"
    seed: int = 0


@dataclass
class FitResult:
    gaussians: Gaussians
    iterations: int
    seconds: float
    rasterizer: str
    losses: list[str]  # the loss terms used
    history: list[float]  # loss per iteration
    edits: dict[str, int]  # densification totals
    heldout: list[tuple[int, float]] = field(default_factory=list)  # (iteration, held-out loss)
    stopped_early: bool = False


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_rasterizer(name: str, device: torch.device) -> str:
    if name not in RASTERIZERS:
        raise InputError(f"unknown splat rasterizer {name!r}: use one of {', '.join(RASTERIZERS)}")
    if name == "auto":
        from . import raster_gsplat

        if device.type == "cpu":
            return "cpu"
        return "gsplat" if device.type == "cuda" and raster_gsplat.available() else "torch"
    if name == "gsplat" and device.type != "cuda":
        raise InputError("the gsplat rasterizer needs a CUDA GPU, and none is available")
    if name == "cpu" and device.type != "cpu":
        raise InputError(f"the cpu rasterizer renders on the CPU, not on {device.type}")
    return name


def render_fn(name: str) -> Callable[..., Render]:
    if name == "gsplat":
        from . import raster_gsplat

        return raster_gsplat.render
    if name == "cpu":
        from . import raster_cpu

        return raster_cpu.render
    return raster_torch.render


def render_step(name: str, g: Gaussians, camera: Camera, background: torch.Tensor,
                sh_degree: int) -> tuple[Render, dict[str, Any]]:
    """One training view and the `info` its densification strategy reads (gsplat's own for gsplat,
    the same keys in gsplat's packed form for the others)."""
    if name == "gsplat":
        from .raster_gsplat import render_batch

        renders, info = render_batch(g, [camera], background, sh_degree=sh_degree)
        return renders[0], info
    out = render_fn(name)(g, camera, background, sh_degree=sh_degree)
    return out, {"means2d": out.means2d, "gaussian_ids": out.visible, "radii": out.radii,
                 "width": camera.width, "height": camera.height, "n_cameras": 1}


def make_strategy(config: FitConfig, raster: str):  # type: ignore[no-untyped-def]
    """The densification strategy (gsplat's protocol), or None without densification."""
    if not config.densify:
        return None
    if raster == "gsplat":
        from .strategy_gsplat import strategy

        return strategy(config.densify_config)
    return CloneSplitPrune(config.densify_config, config.seed)


def to_params(g: Gaussians) -> dict[str, torch.Tensor]:
    """gsplat's parameter dict: leaf tensors means, scales (log), quats, opacities (logit), sh0, shN."""
    values = {"means": g.means, "scales": g.log_scales, "quats": g.quats, "opacities": g.opacity_logits,
              "sh0": g.sh[:, :1], "shN": g.sh[:, 1:]}
    return {k: torch.nn.Parameter(v.detach().clone().contiguous()) for k, v in values.items()}


def from_params(params: dict[str, torch.Tensor]) -> Gaussians:
    return Gaussians(params["means"], params["scales"], params["quats"], params["opacities"],
                     torch.cat([params["sh0"], params["shN"]], dim=1))


def load_lpips(device: torch.device):  # type: ignore[no-untyped-def]
    """LPIPS (VGG) when the `lpips` package and its backbone weights are installed locally, else None.
    Never downloads: lpips pulls torchvision's VGG weights from the torch hub cache."""
    try:
        import lpips  # needs torchvision, which the CPU machines do not have
    except Exception:
        return None
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(checkpoints.glob("vgg16-*.pth")):
        return None
    try:
        return lpips.LPIPS(net="vgg", verbose=False).to(device).eval().requires_grad_(False)
    except Exception:
        return None


class ImageLoss:
    """(1 - w) L1 + w (1 - SSIM) (MS-SSIM from 160 px) + mask L1 (+ LPIPS)."""

    def __init__(self, config: FitConfig, height: int, width: int, device: torch.device) -> None:
        import functools

        from pytorch_msssim import ms_ssim, ssim

        self.config = config
        side = min(height, width)
        self.multiscale = side >= MS_SSIM_MIN_SIDE
        self.ssim = functools.partial(ms_ssim, win_size=11 if side > MS_SSIM_MIN_SIDE else 9) if self.multiscale else ssim
        self.lpips = load_lpips(device) if config.lpips_weight > 0 else None

    @property
    def terms(self) -> list[str]:
        terms = ["l1", "ms-ssim" if self.multiscale else "ssim", "mask"]
        return terms + (["lpips"] if self.lpips is not None else [])

    def __call__(self, render: Render, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        c = self.config
        x = render.color.permute(2, 0, 1)[None]
        y = target.permute(2, 0, 1)[None]
        loss = (1 - c.ssim_weight) * (x - y).abs().mean()
        loss = loss + c.ssim_weight * (1 - self.ssim(x, y, data_range=1.0, size_average=True))
        if mask is not None and c.mask_weight > 0:
            loss = loss + c.mask_weight * (render.alpha - mask).abs().mean()
        if self.lpips is not None:
            loss = loss + c.lpips_weight * self.lpips(x * 2 - 1, y * 2 - 1).mean()
        return loss


def _optimizers(params: dict[str, torch.Tensor], config: FitConfig) -> dict[str, torch.optim.Optimizer]:
    lrs = {"means": config.lr_means * config.scene_scale, "scales": config.lr_scales, "quats": config.lr_quats,
           "opacities": config.lr_opacities, "sh0": config.lr_sh0, "shN": config.lr_shN}
    return {name: torch.optim.Adam([params[name]], lr=lrs[name], eps=1e-15) for name in PARAM_NAMES}


def fit(gaussians: Gaussians, views: FitViews, config: FitConfig | None = None,
        progress: Progress = no_progress, stage: str = "fitting Gaussians",
        heldout: FitViews | None = None) -> FitResult:
    """Optimize `gaussians` to reproduce `views`; returns the fitted Gaussians (detached, CPU).
    With `heldout` views (not trained on) the fit stops early once their loss stops falling."""
    config = config or FitConfig()
    if config.iterations < 1:
        raise InputError("fitting needs at least one iteration")
    device = pick_device(config.device)
    raster = pick_rasterizer(config.rasterizer, device)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    h, w = views.images.shape[1:3]
    images = views.images.to(device)
    masks = None if views.masks is None else views.masks.to(device)
    bg = torch.tensor(views.background, dtype=torch.float32, device=device)
    params = to_params(gaussians.with_sh_degree(config.sh_degree).to(device))
    optimizers = _optimizers(params, config)
    decay = 0.01 ** (1.0 / max(config.iterations, 1))
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizers["means"], gamma=decay)
    loss_fn = ImageLoss(config, h, w, device)
    strategy = make_strategy(config, raster)
    state: dict[str, Any] = {}
    if strategy is not None:
        strategy.check_sanity(params, optimizers)
        state = strategy.initialize_state(scene_scale=config.scene_scale)
    stopper = None if heldout is None else EarlyStop(config, heldout, loss_fn, raster, device)
    history: list[float] = []
    order: list[int] = []
    start = time.perf_counter()
    step = 0
    for step in range(1, config.iterations + 1):
        if not order:
            order = list(range(len(views.cameras)))
            rng.shuffle(order)
        view = order.pop()
        degree = min(config.sh_degree, (step - 1) // max(config.sh_increase_every, 1))
        out, info = render_step(raster, from_params(params), views.cameras[view], bg, degree)
        loss = loss_fn(out, images[view], None if masks is None else masks[view])
        if strategy is not None:
            strategy.step_pre_backward(params, optimizers, state, step, info)
        loss.backward()
        value = loss.detach().item()
        if not math.isfinite(value):
            raise FloatingPointError(f"the fit diverged at iteration {step} (loss {value})")
        history.append(value)
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        scheduler.step()
        if strategy is not None:  # after the optimizer step, as gsplat's trainer does
            strategy.step_post_backward(params, optimizers, state, step, info, packed=raster != "gsplat")
        if stopper is not None and stopper.should_stop(step, from_params(params), degree):
            progress(1.0, stage)
            break
        progress(step / config.iterations, stage)
    seconds = time.perf_counter() - start
    result = from_params(params).detach().to("cpu")
    return FitResult(result, step, seconds, raster, loss_fn.terms, history, dict(state.get("edits", new_edits())),
                     [] if stopper is None else stopper.history, stopper is not None and stopper.stopped)


class EarlyStop:
    """Held-out loss every `eval_every` iterations; stop after `patience` evaluations without a
    `min_improvement` relative gain over the best (not before `min_fraction` of the run)."""

    def __init__(self, config: FitConfig, heldout: FitViews, loss_fn: ImageLoss, raster: str,
                 device: torch.device) -> None:
        self.config, self.heldout, self.loss_fn = config, heldout, loss_fn
        self.render = render_fn(raster)
        self.images = heldout.images.to(device)
        self.masks = None if heldout.masks is None else heldout.masks.to(device)
        self.bg = torch.tensor(heldout.background, dtype=torch.float32, device=device)
        self.every = config.eval_every or max(config.iterations // 20, 10)
        self.best, self.waited, self.stopped = math.inf, 0, False
        self.history: list[tuple[int, float]] = []

    @torch.no_grad()
    def should_stop(self, step: int, g: Gaussians, sh_degree: int) -> bool:
        if step % self.every:
            return False
        losses = [self.loss_fn(self.render(g, cam, self.bg, sh_degree=sh_degree), self.images[i],
                               None if self.masks is None else self.masks[i]).item()
                  for i, cam in enumerate(self.heldout.cameras)]
        value = sum(losses) / len(losses)
        self.history.append((step, value))
        if value < self.best * (1.0 - self.config.min_improvement):
            self.best, self.waited = value, 0
        else:
            self.best = min(self.best, value)
            self.waited += 1
        self.stopped = (self.config.min_fraction * self.config.iterations <= step < self.config.iterations
                        and self.waited >= self.config.patience)
        return self.stopped


@torch.no_grad()
def render_views(gaussians: Gaussians, cameras: Sequence[Camera], background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 rasterizer: str = "auto", device: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, H, W, 3) and alphas (N, H, W) of the Gaussians from each camera (CPU tensors)."""
    dev = pick_device(device)
    raster = pick_rasterizer(rasterizer, dev)
    g = gaussians.to(dev)
    bg = torch.tensor(background, dtype=torch.float32, device=dev)
    if raster == "gsplat":  # batches of cameras [C, 4, 4] per gsplat call
        from .raster_gsplat import render_batch

        outs = [r for i in range(0, len(cameras), GSPLAT_BATCH)
                for r in render_batch(g, cameras[i:i + GSPLAT_BATCH], bg)[0]]
    else:
        render = render_fn(raster)
        outs = [render(g, cam, bg) for cam in cameras]
    return torch.stack([o.color.cpu() for o in outs]), torch.stack([o.alpha.cpu() for o in outs])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)
