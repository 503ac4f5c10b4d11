"""Loading a mesh file by its suffix: glTF/GLB through gltf_primitives, OBJ/PLY through trimesh
(mesh.py). The dispatch lives here, above both readers, so neither imports the other."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .gltf_primitives import GltfMesh, load_gltf_mesh
from .mesh import MESH_SUFFIXES, Mesh, load_trimesh, mesh_from_trimesh


def load_mesh(path: str | Path) -> Mesh:
    """Load a GLB/glTF/OBJ/PLY file as one Mesh (all primitives, node transforms applied).

    glTF/GLB goes through the one glTF reader (gltf_primitives: pygltflib, UVs = the first UV map
    on every primitive, whatever the material); OBJ/PLY through trimesh (OBJ `vt` kept without an
    MTL). Raises InputError with the file name for anything unreadable.
    """
    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise InputError(f"{path.name}: unsupported mesh format {path.suffix!r}; use one of {', '.join(MESH_SUFFIXES)}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() in (".glb", ".gltf"):
        return load_gltf_mesh(path).mesh
    return mesh_from_trimesh(load_trimesh(path), path.name)


def load_mesh_uv(path: str | Path, uv_map: str | None = None) -> tuple[Mesh, GltfMesh | None]:
    """A mesh file with the UV map to bake onto: glTF/GLB through this module (any TEXCOORD_n),
    OBJ/PLY through `load_mesh` (their one UV map). The GltfMesh is returned for the GLB writer."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise InputError(f"{path.name}: unsupported mesh format {suffix!r}; use one of {', '.join(MESH_SUFFIXES)}")
    if suffix in (".glb", ".gltf"):
        loaded = load_gltf_mesh(path, uv_map)
        return loaded.mesh, loaded
    mesh = load_mesh(path)
    if uv_map not in (None, "", "0", "TEXCOORD_0", "texcoord_0") or (uv_map and mesh.uvs is None):
        raise InputError(f"{path.name}: {suffix} files have at most one UV map (TEXCOORD_0); no UV map {uv_map!r}")
    return mesh, None
