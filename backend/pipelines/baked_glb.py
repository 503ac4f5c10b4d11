"""A mesh loaded for baking, and the baked GLB: the one way the texture and bake pipelines do both.

The mesh comes with the UV map to bake onto (glTF/GLB: any TEXCOORD_n, plus the per-primitive
records the writer needs; OBJ/PLY: their one UV map). The GLB keeps the input's glTF as it is
(nodes, transforms, vertex and triangle order, other attributes) and puts the texture on that same
UV map, or on the new xatlas map when the mesh had none (backend/assets/glb_write.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the service imports pipeline modules without numpy/torch work
    from ..assets.gltf_primitives import GltfMesh
    from ..assets.mesh import Mesh
    from ..bake.baker import BakeResult


@dataclass(frozen=True)
class BakeTarget:
    path: Path  # the input mesh file (the GLB writer copies its glTF)
    mesh: "Mesh"  # with the chosen UV map as `uvs` (None: the bake makes one)
    gltf: "GltfMesh | None"  # glTF inputs: primitive records and the TEXCOORD index; None for OBJ/PLY


def load_bake_target(path: str | Path, uv_map: str | None = None) -> BakeTarget:
    """The mesh file with the UV map `uv_map` (TEXCOORD_n or n; None = the first) to bake onto."""
    from ..assets.load import load_mesh_uv

    mesh, gltf = load_mesh_uv(path, uv_map)
    return BakeTarget(Path(path), mesh, gltf)


def write_baked_glb(target: BakeTarget, result: "BakeResult", out: str | Path) -> Path:
    """`out` (.glb): the input mesh as it is, with the baked texture as its base colour."""
    from ..assets.glb_write import write_textured_glb

    gltf = target.gltf
    return write_textured_glb(target.path, out, result.texture, result.mesh,
                              uv_index=gltf.uv_index if gltf is not None else 0, vmapping=result.vmapping,
                              primitives=gltf.primitives if gltf is not None else None)


def uv_map_name(target: BakeTarget, result: "BakeResult") -> str:
    """The UV map the texture lives on, for reports: TEXCOORD_n, or "xatlas" for a new one."""
    if target.gltf is not None and target.gltf.uv_index is not None:
        return f"TEXCOORD_{target.gltf.uv_index}"
    return "xatlas" if result.vmapping is not None else "TEXCOORD_0"
