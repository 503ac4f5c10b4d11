"""A UV map for meshes that have none (xatlas).

xatlas keeps the triangle order and splits vertices only along its chart seams: the new mesh's
vertex k is a copy of input vertex `vmapping[k]`, so the vertex count grows by the seam copies
and nothing else changes (positions, normals and any other per-vertex data are gathered through
`vmapping`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..assets.mesh import Mesh, make_mesh


@dataclass(frozen=True)
class Atlas:
    mesh: Mesh  # the input mesh with seams split and the new UVs
    vmapping: np.ndarray  # (V',) int64 new vertex -> input vertex


def make_uv_map(mesh: Mesh, texture_size: int, padding: int = 4) -> Atlas:
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(mesh.positions.astype(np.float32), mesh.faces.astype(np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = int(texture_size)
    pack.padding = int(padding)
    pack.bilinear = True
    atlas.generate(xatlas.ChartOptions(), pack)
    vmapping, faces, uvs = atlas[0]
    vmapping = vmapping.astype(np.int64)
    new = make_mesh(mesh.positions[vmapping], faces.astype(np.int64), uvs.astype(np.float32),
                    mesh.normals[vmapping])
    return Atlas(new, vmapping)
