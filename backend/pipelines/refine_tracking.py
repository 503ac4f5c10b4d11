"""Refine's trackers: for each frame, which pixels a finished frame saw and where (exact
reprojection through the rendered geometry, DIS optical flow chained along the orbit, or CoTracker3
backward tracks when its weights are installed)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .refine_types import Params, Rendered

if TYPE_CHECKING:
    import numpy as np

    from ..track.geometry import ViewGeometry
    from .refine_progressive import Correspond

COTRACKER_GRID = 4  # pixels between CoTracker query points


def cotracker_module():  # type: ignore[no-untyped-def]
    import importlib

    from ..errors import OrbitexError

    try:
        return importlib.import_module("backend.models.cotracker")
    except ModuleNotFoundError as exc:
        if exc.name != "backend.models.cotracker":
            raise OrbitexError(f"the CoTracker3 tracker cannot load: {exc}") from None
        raise OrbitexError("the CoTracker3 tracker is not part of this backend build (backend/models/cotracker.py "
                           "is missing); use --tracker geometry or flow") from None


def geometry_correspond(views: list["ViewGeometry"], tolerance: float) -> "Correspond":
    from ..track.geometry import reproject

    def correspond(target: int, refs: Sequence[int]) -> list:
        v = views[target]
        return [(r, reproject(v.position, v.mask, views[r], tolerance, v.normal)) for r in refs]

    return correspond


def flow_correspond(images: "np.ndarray", masks: "np.ndarray", orbits: list[list[int]]) -> "Correspond":
    """Along the target's orbit towards the source, up to the first finished frame on the way."""
    from ..track.flow import FlowTracker, chain_paths

    tracker = FlowTracker(images, masks)
    paths: dict[int, list[int]] = {}
    for cycle in orbits:
        for local, path in enumerate(chain_paths(len(cycle), 0, cyclic=True)):
            if cycle[local] not in paths:
                paths[cycle[local]] = [cycle[p] for p in path]

    def correspond(target: int, refs: Sequence[int]) -> list:
        path = paths[target]
        finished = set(refs)
        stop = next((k for k, f in enumerate(path) if f in finished and k > 0), len(path) - 1)
        return [(path[stop], tracker.follow(path[:stop + 1]))]

    return correspond


def make_correspond(params: Params, rendered: Rendered, tolerance: float) -> "Correspond":
    if params.tracker == "geometry":
        return geometry_correspond(rendered.views, tolerance)
    if params.tracker == "flow":
        return flow_correspond(rendered.images, rendered.masks, rendered.orbits)
    return cotracker_correspond(rendered, flow_correspond(rendered.images, rendered.masks, rendered.orbits))




def cotracker_correspond(rendered: Rendered, flow: "Correspond") -> "Correspond":
    """CoTracker3 (backward tracking of a query grid, per orbit) says which pixels of each frame
    the source saw: a pixel is seen when a visible track lands within a grid step of it. Colours
    still come through the chained flow, so a pixel counts as seen where both agree."""
    import numpy as np

    from ..track.geometry import Correspondence
    from ..track.masks import dilate

    module = cotracker_module()
    seen = np.zeros(rendered.masks.shape, dtype=bool)
    for cycle in rendered.orbits:
        coords, visible = module.track_backward(rendered.images[cycle], 0, COTRACKER_GRID)
        for local, frame in enumerate(cycle):
            xy = np.round(coords[local][visible[local]]).astype(np.int64)
            h, w = rendered.masks.shape[1:]
            ok = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
            hit = np.zeros((h, w), dtype=bool)
            hit[xy[ok, 1], xy[ok, 0]] = True
            seen[frame] |= dilate(hit, COTRACKER_GRID // 2 + 1, within=rendered.masks[frame])

    def correspond(target: int, refs: Sequence[int]) -> list:
        return [(ref, Correspondence(c.coords, c.seen & seen[target])) for ref, c in flow(target, refs)]

    return correspond
