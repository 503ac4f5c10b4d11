"""Per-object completion reports (the figures report.json holds)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .types import Completion
from .metrics import mesh_summary, point_to_mesh_distance


def object_report(name: str, completion: Completion, points: np.ndarray, extra: dict[str, Any]) -> dict[str, Any]:
    """Front deviation (scan points to the result), watertightness, volume, and how it was made."""
    dev = point_to_mesh_distance(points, completion.vertices, completion.faces)
    summary = mesh_summary(completion.vertices, completion.faces)
    voxel = completion.voxel
    return {
        "name": name,
        "scan_points": int(len(points)),
        "front_deviation": {"max": float(dev.max()), "mean": float(dev.mean()),
                            "p99": float(np.quantile(dev, 0.99)), "voxel": float(voxel),
                            "max_voxels": float(dev.max() / voxel), "mean_voxels": float(dev.mean() / voxel)},
        "watertight": summary["watertight"],
        "volume": summary["volume"],
        "vertices": summary["vertices"],
        "faces": summary["faces"],
        "components": summary["components"],
        "symmetry_plane": None if completion.symmetry is None else {
            "normal": completion.symmetry.normal.tolist(), "offset": completion.symmetry.offset,
            "support": completion.symmetry.support, "violation": completion.symmetry.violation},
        **extra,
        "notes": list(completion.notes),
    }
