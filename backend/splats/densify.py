"""Clone / split / prune densification (3DGS's adaptive density control) for the CPU path.

Parameters live as gsplat keeps them (a dict of leaf tensors `means scales quats opacities sh0 shN`
with one Adam optimizer each), so the CUDA path hands the same dicts to gsplat's DefaultStrategy
(strategy_gsplat.py adds the same budget). Thresholds follow 3DGS / gsplat's defaults: view-space
positional gradient (in NDC units) above 0.0002 grows a Gaussian; small ones (max scale <= 1 % of
the scene) are cloned, large ones split in two samples of themselves with scales / 1.6; Gaussians
below 0.5 % opacity, or larger than 10 % of the scene, are pruned; opacities are reset to 1 % now
and then. On a budget: growth stops at `max_gaussians`, the highest gradients grown first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .model import quat_to_rotmat

PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")


@dataclass
class DensifyConfig:
    refine_start: int = 300
    refine_stop: int = 10_000
    refine_every: int = 100
    reset_every: int = 3000
    grow_grad2d: float = 0.0002
    grow_scale3d: float = 0.01
    prune_opacity: float = 0.005
    prune_scale3d: float = 0.1
    max_gaussians: int = 300_000


class CloneSplitPrune:
    """Tracks screen-space gradients between refinements and edits params + optimizer states.

    Same protocol as gsplat's strategies (so the fit drives either with one loop):
    `initialize_state(scene_scale)`, `step_pre_backward(params, optimizers, state, step, info)`,
    `step_post_backward(params, optimizers, state, step, info, packed)`, with `info` in gsplat's
    packed form: means2d (M, 2) of the visible Gaussians `gaussian_ids` (M,), width, height,
    n_cameras. Totals of the edits accumulate in state["edits"]."""

    def __init__(self, config: DensifyConfig, seed: int = 0) -> None:
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        return {"grad2d": None, "count": None, "scene_scale": scene_scale, "edits": new_edits()}

    def check_sanity(self, params: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer]) -> None:
        missing = [name for name in PARAM_NAMES if name not in params or name not in optimizers]
        if missing:
            raise ValueError(f"densification needs params and optimizers for {', '.join(missing)}")

    def step_pre_backward(self, params: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer],
                          state: dict[str, Any], step: int, info: dict[str, Any]) -> None:
        info["means2d"].retain_grad()

    @torch.no_grad()
    def step_post_backward(self, params: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer],
                           state: dict[str, Any], step: int, info: dict[str, Any], packed: bool = True) -> None:
        """Accumulate this view's statistics; refine/reset on schedule."""
        if not packed:
            raise ValueError("CloneSplitPrune reads packed info (means2d of the visible Gaussians only)")
        cfg, n = self.config, params["means"].shape[0]
        if state["grad2d"] is None or state["grad2d"].shape[0] != n:
            state["grad2d"] = torch.zeros(n, device=params["means"].device)
            state["count"] = torch.zeros(n, device=params["means"].device)
        means2d, ids = info["means2d"], info["gaussian_ids"]
        if means2d.grad is not None and len(ids):
            scale = torch.tensor([info["width"] / 2.0, info["height"] / 2.0], device=means2d.device) * info["n_cameras"]
            state["grad2d"].index_add_(0, ids, (means2d.grad * scale).norm(dim=-1).to(state["grad2d"].dtype))
            state["count"].index_add_(0, ids, torch.ones_like(ids, dtype=state["count"].dtype))
        if cfg.refine_start < step < cfg.refine_stop and step % cfg.refine_every == 0:
            for key, value in self._refine(params, optimizers, state, step).items():
                state["edits"][key] += value
            state["grad2d"] = state["count"] = None
        if step % cfg.reset_every == 0 and 0 < step < cfg.refine_stop:
            limit = _logit(cfg.prune_opacity * 2.0)
            _edit(params, optimizers, "opacities", lambda p: p.clamp_max(limit), zero_state=True)

    def _refine(self, params, optimizers, state, step: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
        cfg, scene_scale = self.config, state["scene_scale"]
        avg = state["grad2d"] / state["count"].clamp_min(1.0)
        high = avg > cfg.grow_grad2d
        max_scale = torch.exp(params["scales"]).max(-1).values
        small = max_scale <= cfg.grow_scale3d * scene_scale
        # on a budget: each clone or split adds one Gaussian; the highest gradients go first
        grow = budget_order(avg, high, cfg.max_gaussians - params["means"].shape[0])
        clone = grow[small[grow]]
        split = grow[~small[grow]]

        # split: two samples from each Gaussian's own distribution, 1.6x smaller
        rot = quat_to_rotmat(params["quats"][split])
        scales = torch.exp(params["scales"][split])
        noise = torch.randn(2, len(split), 3, generator=self.generator).to(scales.device)
        offsets = torch.einsum("nij,snj->sni", rot, scales[None] * noise)
        new: dict[str, torch.Tensor] = {}
        for name in PARAM_NAMES:
            p = params[name]
            pieces = [p[clone], p[split].repeat(2, *[1] * (p.dim() - 1))]
            new[name] = torch.cat(pieces)
        k = len(clone)
        new["means"][k:] = (params["means"][split][None] + offsets).reshape(-1, 3)
        new["scales"][k:] = (params["scales"][split] - math.log(1.6)).repeat(2, 1)
        keep = torch.ones(params["means"].shape[0], dtype=torch.bool, device=avg.device)
        keep[split] = False
        _grow(params, optimizers, keep, new)

        # prune: transparent, or (after the first opacity reset) too large
        opac = torch.sigmoid(params["opacities"])
        prune = opac < cfg.prune_opacity
        if step > cfg.reset_every:
            prune |= torch.exp(params["scales"]).max(-1).values > cfg.prune_scale3d * scene_scale
        if prune.all():  # never empty the model
            prune[torch.argmax(opac)] = False
        _grow(params, optimizers, ~prune, None)
        return {"cloned": int(len(clone)), "split": int(len(split)), "pruned": int(prune.sum())}


def new_edits() -> dict[str, int]:
    return {"cloned": 0, "split": 0, "pruned": 0}


def budget_order(score: torch.Tensor, candidates: torch.Tensor, room: int) -> torch.Tensor:
    """Indices of the candidates (bool mask) with the highest scores, at most `room` of them."""
    index = torch.nonzero(candidates)[:, 0]
    room = max(0, int(room))
    if len(index) > room:
        index = index[torch.argsort(score[index], descending=True, stable=True)[:room]]
        index = torch.sort(index).values
    return index


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _grow(params: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer],
          keep: torch.Tensor, new: dict[str, torch.Tensor] | None) -> None:
    """Keep rows `keep` of every parameter and append `new` rows; Adam moments follow (zeros for
    new rows)."""
    for name in PARAM_NAMES:
        old = params[name]
        added = None if new is None else new[name].detach()
        value = old.detach()[keep] if added is None else torch.cat([old.detach()[keep], added])
        param = torch.nn.Parameter(value, requires_grad=old.requires_grad)
        opt = optimizers[name]
        state = opt.state.pop(old, None)
        if state:
            for key, v in list(state.items()):
                if isinstance(v, torch.Tensor) and v.shape == old.shape:
                    kept = v[keep]
                    state[key] = kept if added is None else torch.cat([kept, torch.zeros_like(added)])
            opt.state[param] = state
        opt.param_groups[0]["params"] = [param]
        params[name] = param


def _edit(params: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer], name: str,
          fn, zero_state: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Replace one parameter's values in place (optionally zeroing its Adam moments)."""
    p = params[name]
    p.data.copy_(fn(p.data))
    if zero_state:
        for v in optimizers[name].state.get(p, {}).values():
            if isinstance(v, torch.Tensor) and v.shape == p.shape:
                v.zero_()
