"""gsplat's DefaultStrategy with the fit's Gaussian budget and a record of what it edited.

gsplat 1.5.3's DefaultStrategy has no cap on the number of Gaussians and only prints its edits
(verbose). This subclass keeps its rules and its ops (duplicate / split / remove) and adds:
growth stops at `max_gaussians` (the highest average screen gradients grow first, each
duplicate or split costing one Gaussian, as in densify.CloneSplitPrune), and totals of the
duplicated ("cloned"), split and pruned Gaussians in state["edits"]. Importing this module needs
gsplat (a CUDA machine: pip install gsplat==1.5.3); its strategy code itself is plain torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from gsplat import DefaultStrategy
from gsplat.strategy.ops import duplicate, split

from .densify import DensifyConfig, new_edits


@dataclass
class BudgetedDefaultStrategy(DefaultStrategy):
    max_gaussians: int = 300_000

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        state = super().initialize_state(scene_scale=scene_scale)
        state["edits"] = new_edits()
        return state

    @torch.no_grad()
    def _grow_gs(self, params, optimizers, state: dict[str, Any], step: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
        grads = state["grad2d"] / state["count"].clamp_min(1)
        device = grads.device
        is_grad_high = grads > self.grow_grad2d
        is_small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        is_dupli = is_grad_high & is_small
        is_split = is_grad_high & ~is_small
        if step < self.refine_scale2d_stop_iter:
            is_split |= state["radii"] > self.grow_scale2d
        # the budget: candidates by falling gradient while their added Gaussians fit
        room = max(0, self.max_gaussians - len(params["means"]))
        candidates = torch.nonzero(is_dupli | is_split)[:, 0]
        order = candidates[torch.argsort(grads[candidates], descending=True, stable=True)]
        cost = torch.cumsum(is_dupli[order].long() + is_split[order].long(), 0)
        chosen = torch.zeros_like(is_dupli)
        chosen[order[cost <= room]] = True
        is_dupli &= chosen
        is_split &= chosen
        n_dupli, n_split = int(is_dupli.sum()), int(is_split.sum())
        if n_dupli > 0:
            duplicate(params=params, optimizers=optimizers, state=state, mask=is_dupli)
        # duplicates (appended at the end) are not split
        is_split = torch.cat([is_split, torch.zeros(n_dupli, dtype=torch.bool, device=device)])
        if n_split > 0:
            split(params=params, optimizers=optimizers, state=state, mask=is_split,
                  revised_opacity=self.revised_opacity)
        state["edits"]["cloned"] += n_dupli
        state["edits"]["split"] += n_split
        return n_dupli, n_split

    @torch.no_grad()
    def _prune_gs(self, params, optimizers, state: dict[str, Any], step: int) -> int:  # type: ignore[no-untyped-def]
        n_prune = int(super()._prune_gs(params, optimizers, state, step))
        state["edits"]["pruned"] += n_prune
        return n_prune


def strategy(config: DensifyConfig) -> BudgetedDefaultStrategy:
    """The DefaultStrategy with our thresholds and budget."""
    return BudgetedDefaultStrategy(
        refine_start_iter=config.refine_start, refine_stop_iter=config.refine_stop,
        refine_every=config.refine_every, reset_every=config.reset_every, grow_grad2d=config.grow_grad2d,
        grow_scale3d=config.grow_scale3d, prune_opa=config.prune_opacity, prune_scale3d=config.prune_scale3d,
        max_gaussians=config.max_gaussians)
