"""Keep the completion's handles to those the scanner saw: no empty loop through hidden space.

The completed solid is decided voxel by voxel (inside where the field is < 0). Behind the front
nothing was seen, and where the priors meet (a wall seen edge-on beside the body, the layers of an
occluding edge, the side seam) the field leaves thin empty slits bridged here and there; each
bridge is a handle (a genus-0 box came out with genus 12). The true handles of an object are the
through-holes the scanner saw through, and those are seen empty space.

So the empty space is rebuilt from what was seen empty (`seen`: in front of the front, outside the
silhouette cone, the grid's border) by growing it into the hidden empty voxels, most empty first
(largest field value), adding a voxel only where its empty neighbours form one piece (the empty
space's topological number T26 = 1: 26-connected empty space against 6-connected solid, the way
marching cubes reads the field once `separate_diagonal_solid` has settled its ambiguous faces): the
empty space then never closes a loop around solid that the seen empty space did not already
have, nor merges two empty pockets. Hidden empty voxels it cannot reach that way stay solid: a
plug across each slit that would have made a handle, and closed cavities. The solid may still
split (a bridge may empty out), which only removes handles or adds pieces, never adds one.
"""
from __future__ import annotations

import heapq

import numba
import numpy as np

# the 26 neighbour offsets and which of them are 26-adjacent to each other
_OFFSETS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)],
                    dtype=np.int64)
_ADJ26 = np.array([[np.abs(a - b).max() == 1 for b in _OFFSETS] for a in _OFFSETS])
PLUG_DEEPER = 0.5  # growth order: voxels of emptiness worth one voxel of distance from seen space


def plug_hidden_loops(inside: np.ndarray, seen: np.ndarray, emptiness: np.ndarray) -> np.ndarray:
    """Bool mask of the hidden empty voxels (not `inside`, not `seen`) to make solid so that the
    empty space has no loop or pocket merge that the seen empty space lacks. `emptiness` (same
    shape, in voxels: the field value): the most clearly empty grow first, and those nearer to
    seen space before deeper ones (PLUG_DEEPER per voxel of distance), so the plugs land deep in
    hidden space, not beside the front, where added solid would move the surface off the scan.
    The grid's outer layer counts as seen."""
    from scipy.ndimage import distance_transform_edt

    empty = (~inside) | seen
    grown = np.zeros(inside.shape, np.uint8)
    grown[seen & ~inside] = 1
    grown[[0, -1]] = 1
    grown[:, [0, -1]] = 1
    grown[:, :, [0, -1]] = 1
    hidden = empty & (grown == 0)
    if not hidden.any():
        return hidden
    order = emptiness - PLUG_DEEPER * distance_transform_edt(~seen)  # (from what was seen, not the grid's border)
    _grow(grown, hidden.astype(np.uint8), order.astype(np.float64), _OFFSETS, _ADJ26)
    return hidden & (grown == 0)


@numba.njit(cache=True)
def _empty_pieces(grown, i, j, k, offsets, adj26):  # type: ignore[no-untyped-def]
    """T26 of the grown empty space at (i, j, k): its 26-connected pieces among the 26 neighbours."""
    n = len(offsets)
    member = np.zeros(n, np.bool_)
    for m in range(n):
        member[m] = grown[i + offsets[m, 0], j + offsets[m, 1], k + offsets[m, 2]] == 1
    label = np.full(n, -1, np.int64)
    stack = np.empty(n, np.int64)
    pieces = 0
    for m in range(n):
        if not member[m] or label[m] >= 0:
            continue
        label[m] = pieces
        top = 0
        stack[0] = m
        while top >= 0:
            c = stack[top]
            top -= 1
            for q in range(n):
                if adj26[c, q] and member[q] and label[q] < 0:
                    label[q] = pieces
                    top += 1
                    stack[top] = q
        pieces += 1
    return pieces


@numba.njit(cache=True)
def _grow(grown, hidden, priority, offsets, adj26):  # type: ignore[no-untyped-def]
    nx, ny, nz = grown.shape
    queued = np.zeros(grown.shape, np.bool_)
    heap = [(0.0, np.int64(0), np.int64(0))]  # (-priority, push count: first in first out among ties, voxel)
    heap.pop()
    count = np.int64(0)
    # hidden voxels never lie on the border (it is seen), so their neighbours are in the grid
    for i in range(1, nx - 1):
        for j in range(1, ny - 1):
            for k in range(1, nz - 1):
                if hidden[i, j, k] == 1 and grown[i, j, k] == 0:
                    for m in range(len(offsets)):
                        if grown[i + offsets[m, 0], j + offsets[m, 1], k + offsets[m, 2]] == 1:
                            heapq.heappush(heap, (-priority[i, j, k], count, np.int64((i * ny + j) * nz + k)))
                            count += 1
                            queued[i, j, k] = True
                            break
    while len(heap) > 0:
        _, _, idx = heapq.heappop(heap)
        k = idx % nz
        j = (idx // nz) % ny
        i = idx // (ny * nz)
        queued[i, j, k] = False
        if grown[i, j, k] == 1 or _empty_pieces(grown, i, j, k, offsets, adj26) != 1:
            continue  # (re-queued when a neighbour grows)
        grown[i, j, k] = 1
        for m in range(len(offsets)):
            a, b, c = i + offsets[m, 0], j + offsets[m, 1], k + offsets[m, 2]
            if hidden[a, b, c] == 1 and grown[a, b, c] == 0 and not queued[a, b, c]:
                heapq.heappush(heap, (-priority[a, b, c], count, np.int64((a * ny + b) * nz + c)))
                count += 1
                queued[a, b, c] = True


def _corner_pieces_table() -> np.ndarray:
    """For each of the 256 inside/outside patterns of a cube's corners (bit 4 i + 2 j + k set:
    inside), how many pieces the inside corners form along the cube's edges."""
    corners = [(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    table = np.zeros(256, np.int8)
    for code in range(256):
        inside = [c for n, c in enumerate(corners) if code >> n & 1]
        seen: set = set()
        for c in inside:
            if c in seen:
                continue
            table[code] += 1
            stack = [c]
            while stack:
                x = stack.pop()
                if x in seen:
                    continue
                seen.add(x)
                stack += [y for y in inside if sum(abs(a - b) for a, b in zip(x, y)) == 1]
    return table


_CORNER_PIECES = _corner_pieces_table()
FACE_FACTOR = 1.05  # a settled face's saddle ends this factor past the outside threshold
CUBE_FACTOR = 1.05  # a cube with apart inside corners: its outside corners at least this times its largest |inside| value


def separate_diagonal_solid(values: np.ndarray, passes: int = 3) -> np.ndarray:
    """The field with marching cubes made to read solid voxels that touch only diagonally as
    apart (6-connected solid, as `plug_hidden_loops` counts it). Marching cubes decides such
    places by the trilinear interpolant; left alone it joins some of them and a plugged loop opens
    again as a handle. On every grid face whose one diagonal is inside (< 0) and the other outside,
    the outside pair is raised until the face's saddle is outside (a c < b d); in every cube whose
    inside corners are apart along its edges (two opposite corners, say), its outside corners are
    raised to its largest |inside| value (marching cubes' interior test then parts them). Only
    values > 0 grow, by the least factor needed (the surface there moves towards the inside
    corners, by a fraction of a voxel)."""
    out = values.astype(np.float32, copy=True)
    for _ in range(passes):
        changed = _settle_faces(out) | _settle_cubes(out)
        if not changed:
            break
    return out


def _settle_faces(out: np.ndarray) -> bool:
    changed = False
    for axis in range(3):
        v = np.moveaxis(out, axis, 2)  # faces across the first two axes, one per slice
        a, b, c, d = v[:-1, :-1], v[1:, :-1], v[1:, 1:], v[:-1, 1:]
        for (p, q), (r, s) in ((((a, c), (b, d))), (((b, d), (a, c)))):
            bad = (p < 0) & (q < 0) & (r > 0) & (s > 0) & (p * q >= r * s)
            if not bad.any():
                continue
            changed = True
            with np.errstate(invalid="ignore"):  # (the products are negative off the bad faces)
                factor = np.where(bad, np.sqrt((p * q) / np.maximum(r * s, 1e-30)) * FACE_FACTOR, 1.0).astype(np.float32)
            for corner in (r, s):  # a corner shared by several bad faces ends with the largest factor
                np.maximum(corner, corner * factor, out=corner)
    return changed


def _settle_cubes(out: np.ndarray) -> bool:
    corners = [out[i:out.shape[0] - 1 + i, j:out.shape[1] - 1 + j, k:out.shape[2] - 1 + k]
               for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    code = np.zeros(corners[0].shape, np.uint8)
    for n, c in enumerate(corners):
        code |= (c < 0).astype(np.uint8) << n
    apart = np.nonzero(_CORNER_PIECES[code] >= 2)
    if len(apart[0]) == 0:
        return False
    vals = np.stack([c[apart] for c in corners])  # (8, M)
    # skimage's interior test parts two opposite inside corners a, b once the outside ones pass
    # sqrt(a b): raising them to the largest |inside| value is enough for any pair
    floor = CUBE_FACTOR * (-vals.min(axis=0))
    if (vals[vals > 0] >= np.broadcast_to(floor, vals.shape)[vals > 0]).all():
        return False
    for c in corners:
        cur = c[apart]
        c[apart] = np.where(cur > 0, np.maximum(cur, floor), cur)
    return True
