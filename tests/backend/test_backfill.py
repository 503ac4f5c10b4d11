"""Fill of unseen surface: mesh symmetry detection, symmetry transfer, exemplar synthesis vs BFS,
and the fractions a bake reports."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.assets.mesh_symmetry import detect_symmetry, surface_points  # noqa: E402
from backend.assets.surface_fill import LEFT, SEEN, SYMMETRY, fill_unseen  # noqa: E402
from bench import backfill_assets  # noqa: E402
from bench.synthetic import can_mesh  # noqa: E402


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(min(1.0, abs(float(a @ b)) / np.linalg.norm(a) / np.linalg.norm(b)))))


def test_rotation_axis_of_a_can() -> None:
    sym = detect_symmetry(can_mesh(n=96))
    assert sym.rotation is not None and _angle(sym.rotation.direction, np.array([0.0, 1.0, 0.0])) < 2.0
    assert np.linalg.norm(sym.centre) < 0.01


def test_mirror_plane_of_a_head() -> None:
    sym = detect_symmetry(backfill_assets.head_mesh(96))
    assert sym.rotation is None
    assert len(sym.planes) == 1 and _angle(sym.planes[0].normal, np.array([1.0, 0.0, 0.0])) < 2.0


def test_no_symmetry_on_an_asymmetric_shape() -> None:
    sym = detect_symmetry(backfill_assets.lumpy_mesh(96))
    assert sym.rotation is None and sym.planes == []


def _points(mesh, count: int = 60000):  # type: ignore[no-untyped-def]
    return surface_points(mesh, count, seed=3)


def test_mirror_transfer_copies_the_seen_side() -> None:
    mesh = backfill_assets.head_mesh(96)
    points, normals = _points(mesh)
    # a colour that is mirror-symmetric in x and varies everywhere else
    truth = np.stack([0.5 + 0.4 * np.sin(9 * points[:, 1]), 0.5 + 0.4 * np.cos(7 * points[:, 2]),
                      0.5 + 0.4 * np.sin(11 * np.abs(points[:, 0]) + 3 * points[:, 1])], 1).astype(np.float32)
    seen = points[:, 0] > 0.03
    colour = np.where(seen[:, None], truth, 0.0).astype(np.float32)
    out, kind, report = fill_unseen(points, normals, colour, seen, detect_symmetry(mesh), up=np.array([0.0, 1.0, 0.0]))
    mirrored = kind == SYMMETRY
    assert mirrored.sum() > 0.6 * (~seen).sum(), report  # the rest: the strip |x| < 0.03 and folds
    err = np.abs(out[mirrored] - truth[mirrored]).mean()
    assert err < 0.03, err
    assert (kind[seen] == SEEN).all() and np.array_equal(out[seen], colour[seen])


def _bfs(mesh, points, normals, colour, seen):  # type: ignore[no-untyped-def]
    from backend.assets.surface_voxels import bfs_fill
    from backend.assets.surface_voxels import build_voxels

    graph, voxel = build_voxels(mesh, points.astype(np.float32), normals.astype(np.float32), 64)
    n = len(graph)
    count = np.bincount(voxel[seen], minlength=n)
    sums = np.stack([np.bincount(voxel[seen], colour[seen, c], minlength=n) for c in range(3)], 1)
    filled, _ = bfs_fill(graph, count > 0, sums / np.maximum(count, 1)[:, None])
    return np.where(seen[:, None], colour, filled[voxel])


def test_synthesis_continues_stripes_better_than_bfs() -> None:
    mesh = backfill_assets.lumpy_mesh(96)
    points, normals = _points(mesh)
    sym = detect_symmetry(mesh)
    assert not sym.planes and sym.rotation is None  # nothing to transfer: this is synthesis alone
    theta = np.arctan2(points[:, 0] - sym.centre[0], points[:, 2] - sym.centre[2])
    stripe = (np.sin(8 * theta) > 0).astype(np.float32)  # vertical stripes all round, eight pairs
    truth = np.stack([0.2 + 0.7 * stripe, 0.3 + 0 * stripe, 0.9 - 0.6 * stripe], 1).astype(np.float32)
    seen = points[:, 2] > -0.05
    colour = np.where(seen[:, None], truth, 0.0).astype(np.float32)
    out, kind, report = fill_unseen(points, normals, colour, seen, sym, up=np.array([0.0, 1.0, 0.0]))
    filled = ~seen & (kind != LEFT)
    assert filled.sum() > 0.8 * (~seen).sum(), report
    bfs = _bfs(mesh, points, normals, colour, seen)
    back = ~seen
    ours = np.abs(np.where(filled[:, None], out, bfs) - truth)[back].mean()
    theirs = np.abs(bfs - truth)[back].mean()
    assert ours < 0.6 * theirs, (ours, theirs)


@pytest.mark.parametrize("fill", ["bfs", "synthesis"])
def test_bake_reports_fill_fractions(fill: str) -> None:
    from backend.assets.viewset import ViewSet
    from backend.bake.baker import bake
    from backend.bake.params import BakeParams
    from bench.synthetic import render_views

    mesh, texture = backfill_assets.make("label_can", 256)
    cams = backfill_assets.seen_cameras("label_can", 64)  # the front, three rings (caps partly seen)
    images, masks = render_views(mesh, texture, cams)
    result = bake(mesh, ViewSet(cams, images, masks, [f"v{i}" for i in range(len(cams))]),
                  BakeParams(texture_size=128, voxel_res=64, align=False, fill=fill))
    rep = result.report["fill"]
    parts = rep["symmetry_fraction"] + rep["synthesis_fraction"] + rep["bfs_fraction"]
    unseen = result.report["unseen_fraction"]
    assert unseen > 0.2 and parts == pytest.approx(unseen, abs=1e-6)
    if fill == "bfs":
        assert rep["bfs_fraction"] == pytest.approx(unseen)
    else:
        assert rep["symmetry"]["found"][0]["kind"] == "rotation"
        assert rep["symmetry_fraction"] > 0.5 * unseen and rep["bfs_fraction"] < 0.3 * unseen, rep
    kinds = result.fill_kind[result.fill_kind >= 0]
    assert (kinds == LEFT).mean() == pytest.approx(rep["bfs_fraction"], abs=1e-6)
