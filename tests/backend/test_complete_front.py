"""The completed front stays on the scan: the front snap's reach."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import trimesh

from backend.complete.direction import estimate_direction
from backend.complete.geometric import complete_geometric, make_view
from backend.complete.metrics import point_to_mesh_distance
from backend.complete.surface import snap_front
from bench.complete import make_scan
from bench.complete_shapes import family


def test_snap_reaches_a_scan_point_the_surface_missed():
    sphere = trimesh.creation.icosphere(3, radius=0.5)
    voxel = 0.02
    points = np.array([[0.0, 0.0, 0.5 + 1.6 * voxel]])  # over a voxel off, beside the top
    view = make_view(points, np.array([0.0, 0.0, -1.0]), None)
    out, _ = snap_front(np.asarray(sphere.vertices, dtype=np.float64), np.asarray(sphere.faces), points,
                        np.array([[0.0, 0.0, 1.0]]), view, voxel)
    assert point_to_mesh_distance(points, out, np.asarray(sphere.faces))[0] < 0.9 * voxel
    assert trimesh.Trimesh(out, sphere.faces, process=False).is_watertight


def test_front_within_a_voxel_on_a_noisy_l_bracket_with_walls_seen_edge_on():
    """The bench's L-bracket `ortho-noisy`: its front lay 2.7 voxels off points of a wall seen
    edge-on (a 14 degree error in the scan direction and the plugs beside the wall); the density
    direction and the snap's reach keep it within a voxel."""
    shapes = family()
    k = next(i for i, s in enumerate(shapes) if s.name == "L-bracket")
    with tempfile.TemporaryDirectory() as tmp:
        scan, _ = make_scan(shapes[k], "ortho-noisy", 1000 * k + 2, Path(tmp))
    d, normals = estimate_direction(scan)
    ours = complete_geometric(scan.points, normals, d.vector, scan.viewpoint, 64)
    dev = point_to_mesh_distance(scan.points, ours.vertices, ours.faces)
    assert dev.max() <= ours.voxel
    assert trimesh.Trimesh(ours.vertices, ours.faces, process=False).is_watertight
