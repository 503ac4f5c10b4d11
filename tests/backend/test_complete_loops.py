"""Hidden loops plugged (backend/complete/loops.py): a slit through hidden space gives no handle,
a through-hole the scanner saw through stays open, a closed hidden cavity is filled."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt
from skimage.measure import marching_cubes

from backend.complete.loops import plug_hidden_loops, separate_diagonal_solid
from backend.complete.metrics import topology


def _genus(values: np.ndarray) -> int:
    verts, faces, _, _ = marching_cubes(values, 0.0)
    return topology(verts, faces)["genus"]


def _field(inside: np.ndarray) -> np.ndarray:
    """Signed distance in voxels, < 0 inside (the completion's field is distance-like)."""
    return (distance_transform_edt(~inside) - distance_transform_edt(inside)).astype(np.float32)


def _plugged(values: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    plugs = plug_hidden_loops(values < 0, seen, values)  # (the test fields are in voxels)
    out = values.copy()
    out[plugs] = -0.5
    return out, plugs


def _block_with_slit() -> tuple[np.ndarray, np.ndarray]:
    """A block seen from k = 0 (seen empty: in front of it and beside its silhouette) with a one-voxel slit deep behind
    its front, through the block from side to side: the slit's empty space loops around the solid
    beside it, a handle."""
    inside = np.zeros((24, 24, 24), bool)
    inside[4:20, 4:20, 4:20] = True
    inside[4:20, 11, 10:16] = False  # the slit, through the block along i
    seen = np.ones_like(inside)  # in front of the block and outside its silhouette
    seen[4:20, 4:20, 4:] = False
    return _field(inside), seen


def test_a_slit_through_hidden_space_is_plugged_to_genus_zero():
    values, seen = _block_with_slit()
    assert _genus(values) == 1
    out, plugs = _plugged(values, seen)
    assert _genus(out) == 0
    assert 0 < plugs.sum() <= 12  # one cross-section of the slit (6 voxels), not the slit filled



def test_plugs_land_deep_in_hidden_space_not_beside_what_was_seen():
    values, seen = _block_with_slit()
    values[4:20, 11, 10:16] = np.linspace(0.2, 1.0, 16)[:, None]  # the slit emptier towards i = 19
    # most empty first alone would grow in from the i = 19 end and plug the slit at i = 4, right
    # beside seen space; nearer seen space first, the two ends meet half-way
    _, plugs = _plugged(values, seen)
    assert len(plugs.nonzero()[0]) and np.abs(np.argwhere(plugs)[:, 0] - 11.5).max() <= 3.5
    assert not (plugs & seen).any()


def test_the_same_slit_seen_empty_stays_a_handle():
    values, seen = _block_with_slit()
    seen[4:20, 11, 10:16] = values[4:20, 11, 10:16] > 0  # the scanner saw into the slit
    out, plugs = _plugged(values, seen)
    assert _genus(out) == 1 and not plugs.any()


def test_a_through_hole_seen_stays_open_and_a_hidden_cavity_is_filled():
    ii, jj, kk = np.meshgrid(*(np.arange(28),) * 3, indexing="ij")
    r = np.hypot(ii - 13.5, jj - 13.5)
    inside = (r < 11) & (r > 5) & (kk >= 4) & (kk < 16)  # a washer seen along its axis (k)
    inside |= (r < 5) & (kk >= 12) & (kk < 16)  # ... whose hole is closed behind, where nothing was seen
    seen = (kk < 4) | (r >= 11)
    seen |= (r <= 5) & (kk < 12)
    cavity = (np.abs(ii - 5) <= 1) & (np.abs(jj - 13) <= 1) & (np.abs(kk - 8) <= 1)  # inside the wall
    values = _field(inside & ~cavity)
    out, plugs = _plugged(values, seen)
    assert (plugs == cavity).all()  # the cavity is filled, nothing else changes
    assert _genus(out) == 0  # the hole is closed behind: a cup, as the field said

    open_hole = (r > 5) & (r < 11) & (kk >= 4) & (kk < 16)
    seen_through = (kk < 4) | (r >= 11) | (r <= 5)
    out, plugs = _plugged(_field(open_hole), seen_through)
    assert _genus(out) == 1 and not plugs.any()


def test_solid_touching_along_an_edge_is_read_apart_by_marching_cubes():
    values = np.full((8, 8, 8), 0.1, np.float32)
    values[3, 3, 2:6] = values[4, 4, 2:6] = -1.0  # two rods touching along an edge, strongly inside
    verts, faces, _, _ = marching_cubes(values, 0.0)
    assert topology(verts, faces)["pieces"] == 1  # the saddle of each shared face is inside: joined
    out = separate_diagonal_solid(values)
    verts, faces, _, _ = marching_cubes(out, 0.0)
    assert topology(verts, faces)["pieces"] == 2
    assert (out[values < 0] == values[values < 0]).all() and (out >= values).all()
    assert out.max() <= 2.0  # the outside raised to the order of the inside values, not beyond


def test_solid_touching_at_a_corner_is_read_apart_by_marching_cubes():
    values = np.full((6, 6, 6), 0.2, np.float32)
    values[2, 2, 2] = values[3, 3, 3] = -1.0  # the centre of their cube: (-2 + 6 * 0.2) / 8 < 0
    verts, faces, _, _ = marching_cubes(values, 0.0)
    assert topology(verts, faces)["pieces"] == 1
    verts, faces, _, _ = marching_cubes(separate_diagonal_solid(values), 0.0)
    assert topology(verts, faces)["pieces"] == 2
