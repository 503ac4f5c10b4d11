"""Multi-view consistency refinement (TIRE's stage before the resplat): `mv-sd`.

Views painted one at a time disagree where each painted what the source never saw. Here the
refined views are tiled into one grid image with the source view in the first cell, and the grid
goes through Stable Diffusion img2img (diffusers) at a low strength: self-attention runs over the
whole image, so every view is drawn towards what the others, and the source, show. Latents of
pixels that must not change (what the tracker says a finished frame saw, the background, the
source cell) are held to the grid's own after every step, x <- m * x_gen + (1 - m) * x_src (the
scheduler swap of backend/models/held.py); the latent mask is the free pixel mask max-pooled to
latent resolution, and the decoded grid is composited over the input, so held pixels come back
exactly. The asset is refit from the result (pipelines/refine*.py); `none` is that refit alone.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..errors import InputError

CONSISTENCY = ("none", "mv-sd")
DEFAULT_MODEL = "sd-v1-5"
MODEL_KIND = "diffusers-sd"
DEFAULT_STRENGTH = 0.2
DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = 7.5
DEFAULT_CELLS = 4  # views per grid: the source and three refined views (2 x 2)
GRID_PROMPT = "views of one object from around it, consistent colours and pattern, white background"
NEGATIVE_PROMPT = "blurry, low quality, distorted, text, watermark"


def require_weights(model: str = DEFAULT_MODEL) -> None:
    """MissingWeightsError naming `model`, its size and the download command when it is not installed."""
    from .registry import get_spec, resolve

    if get_spec(model).kind != MODEL_KIND:
        raise InputError(f"model {model!r} is not a Stable Diffusion text-to-image model; use {DEFAULT_MODEL}")
    resolve(model)


def grid_columns(cells: int) -> int:
    return math.ceil(math.sqrt(cells))


def tile(images: np.ndarray, cells: int, fill: float = 1.0) -> np.ndarray:
    """(K, H, W, ...) with K <= cells -> one (rows * H, cols * W, ...) grid, row-major; empty cells `fill`."""
    cols = grid_columns(cells)
    rows = math.ceil(cells / cols)
    k, h, w = images.shape[:3]
    grid = np.full((rows * h, cols * w) + images.shape[3:], fill, dtype=images.dtype)
    for i in range(k):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = images[i]
    return grid


def untile(grid: np.ndarray, count: int, cells: int, h: int, w: int) -> np.ndarray:
    cols = grid_columns(cells)
    cells_at = [divmod(i, cols) for i in range(count)]
    return np.stack([grid[r * h:(r + 1) * h, c * w:(c + 1) * w] for r, c in cells_at])


class MVConsistency:
    """Refines views (N, H, W, 3) in grids of `cells` views, each the anchor view plus views with free pixels."""

    name = "mv-sd"

    def __init__(self, model: str = DEFAULT_MODEL, strength: float = DEFAULT_STRENGTH, steps: int = DEFAULT_STEPS,
                 guidance: float = DEFAULT_GUIDANCE, cells: int = DEFAULT_CELLS, seed: int = 0,
                 device: str = "auto") -> None:
        if not 0.0 < strength <= 1.0:
            raise InputError(f"the consistency strength must be in (0, 1], got {strength}")
        if steps < 1 or int(steps * strength) < 1:
            raise InputError(f"{steps} steps at strength {strength} leave no denoising step; raise one of them")
        if not 2 <= cells <= 16:
            raise InputError(f"a consistency grid holds 2-16 views, not {cells}")
        from .generators import pick_device

        self.model, self.strength, self.steps, self.guidance = model, strength, steps, guidance
        self.cells, self.seed, self.device = cells, seed, pick_device(device)
        self._pipe: Any = None
        self.calls: list[dict[str, Any]] = []  # per grid: its frames and free fraction (reports, tests)

    @property
    def pipe(self) -> Any:
        if self._pipe is None:
            from .sd_inpaint import load_sd_pipeline

            self._pipe = load_sd_pipeline("StableDiffusionImg2ImgPipeline", self.model, self.device)
        return self._pipe

    def refine(self, images: np.ndarray, free: np.ndarray, anchor: int = 0, prompt: str = "",
               progress: Callable[[float], None] | None = None) -> np.ndarray:
        """`images` (N, H, W, 3) float32 in [0, 1], `free` (N, H, W) bool (True = may change; the
        anchor's are ignored, it is held whole). Returns the views with only free pixels changed."""
        if images.ndim != 4 or images.shape[3] != 3 or free.shape != images.shape[:3]:
            raise InputError(f"consistency refinement needs (N, H, W, 3) views and (N, H, W) masks, got "
                             f"{images.shape} and {free.shape}")
        out = np.array(images, dtype=np.float32, copy=True)
        todo = [i for i in range(len(images)) if i != anchor and free[i].any()]
        groups = [todo[k:k + self.cells - 1] for k in range(0, len(todo), self.cells - 1)]
        for g, group in enumerate(groups):
            members = [anchor] + group
            cell_free = free[members].copy()
            cell_free[0] = False
            grid = self.refine_grid(tile(out[members], self.cells), tile(cell_free, self.cells, fill=False), prompt)
            refined = untile(grid, len(members), self.cells, *images.shape[1:3])
            for k, i in enumerate(group, start=1):
                out[i] = np.where(free[i][..., None], refined[k], out[i])
            self.calls.append({"frames": members, "free_fraction": round(float(cell_free.mean()), 4)})
            if progress is not None:
                progress((g + 1) / len(groups))
        if progress is not None and not groups:
            progress(1.0)
        return out

    def refine_grid(self, grid: np.ndarray, free: np.ndarray, prompt: str = "") -> np.ndarray:
        """One grid image (H, W, 3) through img2img with the latents of held (not `free`) pixels
        kept; held pixels are returned exactly as given."""
        import torch

        from .held import held_scheduler, scheduler_swapped
        from .sd_inpaint import held_latents

        pipe = self.pipe
        h, w = free.shape
        _, _, hold = held_latents(pipe, grid, free, self.seed)  # padded to multiples of 8: cropped back below
        # img2img truncates the schedule to `strength` itself
        with scheduler_swapped(pipe, held_scheduler(pipe.scheduler, 0, hold)):
            result = pipe(prompt=", ".join(p for p in (GRID_PROMPT, prompt.strip()) if p),
                          negative_prompt=NEGATIVE_PROMPT, image=hold.source, strength=self.strength,
                          num_inference_steps=self.steps, guidance_scale=self.guidance,
                          generator=torch.Generator("cpu").manual_seed(self.seed), output_type="np")
        painted = np.asarray(result.images[0][:h, :w], dtype=np.float32)
        return np.where(free[..., None], painted, grid).astype(np.float32)


def load_consistency(name: str, **options: Any) -> MVConsistency | None:
    """The consistency stage `name` (CONSISTENCY): None for "none" (the refit alone); mv-sd's
    weights are checked here, before any work."""
    if name == "none":
        return None
    if name == "mv-sd":
        require_weights(options.get("model", DEFAULT_MODEL))
        return MVConsistency(**options)
    raise InputError(f"unknown consistency stage {name!r}; use one of {', '.join(CONSISTENCY)}")
