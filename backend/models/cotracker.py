"""CoTracker3 (offline) as refine's `cotracker` tracker: a grid of points queried in the source
frame, tracked through the whole orbit with `backward_tracking=True` (so frames before the query
frame are covered too), pixel coordinates and visibility per frame.

It needs two things installed: the weights (registry model "cotracker3-offline", the published
scaled_offline.pth) and CoTracker's model code, the `cotracker` Python package of
facebookresearch/co-tracker. That code has no PyPI release and is not part of diffusers or
transformers, so it is not in backend/requirements.txt: install it from its source repository
(pip install of a checkout; it needs torch only for inference). Without either,
`require_weights` names what is missing before any work; nothing here stands in for the model.
"""
from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from ..errors import InputError, MissingWeightsError

MODEL = "cotracker3-offline"
CHECKPOINT = "scaled_offline.pth"
WINDOW = 60  # CoTracker3 offline's window length (the published checkpoint's)
CODE_HINT = ("CoTracker3's model code (the `cotracker` Python package) is not installed: it has no PyPI "
             "release; install it into the backend environment from a checkout of facebookresearch/co-tracker "
             "(`pip install -e co-tracker`), or use --tracker geometry or flow")

_predictors: dict[str, Any] = {}


def require_weights(model: str = MODEL) -> None:
    """MissingWeightsError naming the CoTracker3 weights (and the download command) or its model code
    when either is absent."""
    from .registry import resolve

    problems = []
    try:
        resolve(model)
    except MissingWeightsError as exc:
        problems.append(str(exc))
    if importlib.util.find_spec("cotracker") is None:
        problems.append(CODE_HINT)
    if problems:
        raise MissingWeightsError(" ".join(problems))


def _predictor(device: str) -> Any:
    if device not in _predictors:
        require_weights()
        from cotracker.predictor import CoTrackerPredictor

        from .registry import resolve

        predictor = CoTrackerPredictor(checkpoint=str(resolve(MODEL) / CHECKPOINT), offline=True, v2=False,
                                       window_len=WINDOW)
        _predictors[device] = predictor.to(device).eval()
    return _predictors[device]


def grid_queries(height: int, width: int, source: int, grid_step: int) -> np.ndarray:
    """(N, 3) queries (frame, x, y): pixel centres every `grid_step` pixels of the source frame."""
    ys, xs = np.mgrid[grid_step // 2:height:grid_step, grid_step // 2:width:grid_step]
    return np.stack([np.full(xs.size, source), xs.ravel(), ys.ravel()], 1).astype(np.float32)


def track_backward(frames: np.ndarray, source: int, grid_step: int, device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Track a grid (every `grid_step` pixels) of the source frame through `frames` (T, H, W, 3)
    float32 in [0, 1]: coords (T, N, 2) in pixels (x, y) and visible (T, N) bool."""
    import torch

    from .generators import pick_device

    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2:
        raise InputError(f"CoTracker needs (T >= 2, H, W, 3) frames, got {frames.shape}")
    if not 0 <= source < len(frames) or grid_step < 1:
        raise InputError(f"source frame {source} of {len(frames)}, grid step {grid_step}: out of range")
    dev = pick_device(device)
    predictor = _predictor(dev)
    t, h, w, _ = frames.shape
    video = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32) * 255.0).permute(0, 3, 1, 2)[None]
    queries = torch.from_numpy(grid_queries(h, w, source, grid_step))[None]
    with torch.no_grad():
        tracks, visible = predictor(video.to(dev), queries=queries.to(dev), backward_tracking=True)
    return tracks[0].cpu().numpy().astype(np.float32), visible[0].cpu().numpy().astype(bool)
