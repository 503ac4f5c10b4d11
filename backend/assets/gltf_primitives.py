"""glTF/GLB meshes read primitive by primitive with pygltflib, every UV map (TEXCOORD_n) kept.

`load_gltf_mesh(path, uv_map)` gives the bake its `Mesh`: the triangle primitives of the default
scene's node instances in traversal order (node transforms applied, winding flipped under
mirroring transforms), with the chosen UV map (OpenGL origin, v = 0 at the bottom). `Primitive`
records say which vertex/face range came from which node and primitive, so the GLB writer can
map results back. trimesh reads only TEXCOORD_0, and only for primitives with a material; this
reader does not depend on materials.
"""
from __future__ import annotations

import base64
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .mesh import Mesh, make_mesh

TRIANGLES = 4
_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


@dataclass(frozen=True)
class Primitive:
    node: int
    mesh: int
    primitive: int
    vertex_start: int
    vertex_count: int
    face_start: int
    face_count: int
    mirrored: bool = False  # the node's transform mirrors: the Mesh's winding is flipped


@dataclass(frozen=True)
class GltfMesh:
    mesh: Mesh
    primitives: list[Primitive]
    uv_index: int | None  # the TEXCOORD_n the mesh's UVs came from; None when there is none
    uv_maps: list[str]  # TEXCOORD_n names present on every triangle primitive


def load_gltf(path: str | Path):  # type: ignore[no-untyped-def]
    from pygltflib import GLTF2

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # pygltflib warns about what the InputError below reports
            warnings.simplefilter("ignore")
            gltf = GLTF2().load(str(path))
    except Exception as exc:  # pygltflib raises many types for corrupt files
        raise InputError(f"{path.name}: cannot read the mesh (not a valid glTF: {type(exc).__name__}: {exc})") from None
    if gltf is None:  # pygltflib returns None for some unreadable files
        raise InputError(f"{path.name}: cannot read the mesh (not a valid glTF file)")
    return gltf


def buffer_bytes(gltf, folder: Path) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The bytes of every buffer (GLB chunk, data URI or file beside a .gltf)."""
    out = []
    for i, buf in enumerate(gltf.buffers):
        if buf.uri is None:
            blob = gltf.binary_blob()
            if blob is None:
                raise InputError(f"buffer {i} has no data")
            out.append(bytes(blob))
        elif buf.uri.startswith("data:"):
            out.append(base64.b64decode(buf.uri.split(",", 1)[1]))
        else:
            file = folder / buf.uri
            if not file.is_file():
                raise InputError(f"{file}: buffer file of the glTF is missing")
            out.append(file.read_bytes())
    return out


def read_accessor(gltf, index: int, buffers: list[bytes]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Accessor `index` as an (count, width) array (normalized integers as floats in [0, 1]/[-1, 1])."""
    acc = gltf.accessors[index]
    dtype = np.dtype(_COMPONENTS[acc.componentType])
    width = _WIDTH[acc.type]
    if acc.bufferView is None:
        data = np.zeros((acc.count, width), dtype=dtype)
    else:
        view = gltf.bufferViews[acc.bufferView]
        offset = (view.byteOffset or 0) + (acc.byteOffset or 0)
        stride = view.byteStride or dtype.itemsize * width
        data = np.ndarray((acc.count, width), dtype=dtype, buffer=buffers[view.buffer], offset=offset,
                          strides=(stride, dtype.itemsize)).copy()
    if acc.sparse is not None:
        sp = acc.sparse
        idx_view = gltf.bufferViews[sp.indices.bufferView]
        idx = np.frombuffer(buffers[idx_view.buffer], dtype=_COMPONENTS[sp.indices.componentType], count=sp.count,
                            offset=(idx_view.byteOffset or 0) + (sp.indices.byteOffset or 0))
        val_view = gltf.bufferViews[sp.values.bufferView]
        vals = np.frombuffer(buffers[val_view.buffer], dtype=dtype, count=sp.count * width,
                             offset=(val_view.byteOffset or 0) + (sp.values.byteOffset or 0)).reshape(-1, width)
        data[idx.astype(np.int64)] = vals
    if acc.normalized and dtype.kind in "iu":
        data = np.maximum(data.astype(np.float32) / np.iinfo(dtype).max, -1.0)
    return data


def node_transforms(gltf) -> list[tuple[int, np.ndarray]]:  # type: ignore[no-untyped-def]
    """(node, world matrix) of every node instance of the default scene, depth first."""
    scene_index = gltf.scene if gltf.scene is not None else 0
    if gltf.scenes:
        roots = list(gltf.scenes[scene_index].nodes or [])
    else:  # no scenes: every node that is nobody's child is a root
        children = {c for n in gltf.nodes for c in (n.children or [])}
        roots = [i for i in range(len(gltf.nodes)) if i not in children]
    out: list[tuple[int, np.ndarray]] = []
    stack = [(r, np.eye(4)) for r in reversed(roots)]
    while stack:
        index, parent = stack.pop()
        node = gltf.nodes[index]
        world = parent @ _local_matrix(node)
        out.append((index, world))
        stack.extend((c, world) for c in reversed(node.children or []))
    return out


def _local_matrix(node) -> np.ndarray:  # type: ignore[no-untyped-def]
    if node.matrix is not None and len(node.matrix) == 16:
        return np.asarray(node.matrix, dtype=np.float64).reshape(4, 4).T  # glTF is column-major
    m = np.eye(4)
    if node.scale is not None:
        m = np.diag([*node.scale, 1.0]) @ m
    if node.rotation is not None:
        x, y, z, w = node.rotation
        r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        rot = np.eye(4)
        rot[:3, :3] = r
        m = rot @ m
    if node.translation is not None:
        t = np.eye(4)
        t[:3, 3] = node.translation
        m = t @ m
    return m


def uv_index(name: str | None, available: list[str], source: str) -> int | None:
    """The TEXCOORD index a --uv-map value names ("TEXCOORD_1", "1" or None for the first)."""
    if name is None or name == "":
        return int(available[0].split("_")[1]) if available else None
    text = name.strip().upper()
    index = text.split("_")[-1] if text.startswith("TEXCOORD") else text
    if not index.isdigit() or f"TEXCOORD_{int(index)}" not in available:
        raise InputError(f"{source}: no UV map {name!r}; the mesh has {', '.join(available) or 'none'}")
    return int(index)


def load_gltf_mesh(path: str | Path, uv_map: str | None = None) -> GltfMesh:
    """The triangle primitives of a glTF/GLB as one Mesh with the chosen UV map."""
    path = Path(path)
    gltf = load_gltf(path)
    buffers = buffer_bytes(gltf, path.parent)
    prims: list[tuple[int, int, int, np.ndarray]] = []
    for node_index, world in node_transforms(gltf):
        mesh_index = gltf.nodes[node_index].mesh
        if mesh_index is None:
            continue
        for p_index, prim in enumerate(gltf.meshes[mesh_index].primitives):
            if (prim.mode if prim.mode is not None else TRIANGLES) == TRIANGLES and prim.attributes.POSITION is not None:
                prims.append((node_index, mesh_index, p_index, world))
    if not prims:
        raise InputError(f"{path.name}: the file holds no triangle mesh")
    sets = [{k for k in _attribute_names(gltf.meshes[m].primitives[p]) if k.startswith("TEXCOORD_")}
            for _, m, p, _ in prims]
    common = sorted(set.intersection(*sets), key=lambda k: int(k.split("_")[1]))
    if uv_map and not common and any(sets):
        raise InputError(f"{path.name}: UV maps differ between primitives; none is on all of them")
    index = uv_index(uv_map, common, path.name)
    positions, faces, uvs, normals, records = [], [], [], [], []
    v_base = f_base = 0
    try:
        for node_index, mesh_index, p_index, world in prims:
            prim = gltf.meshes[mesh_index].primitives[p_index]
            pos = read_accessor(gltf, prim.attributes.POSITION, buffers).astype(np.float64)
            tri = (read_accessor(gltf, prim.indices, buffers).reshape(-1, 3).astype(np.int64)
                   if prim.indices is not None else np.arange(len(pos) - len(pos) % 3).reshape(-1, 3))
            if len(tri) and (tri.min() < 0 or tri.max() >= len(pos)):
                raise InputError(f"{path.name}: mesh {mesh_index} primitive {p_index} indexes past its vertices")
            world_pos = pos @ world[:3, :3].T + world[:3, 3]
            mirrored = bool(np.linalg.det(world[:3, :3]) < 0)
            if mirrored:
                tri = tri[:, ::-1]  # a mirroring transform turns the winding around
            positions.append(world_pos)
            faces.append(tri + v_base)
            if index is not None:
                uv = read_accessor(gltf, getattr(prim.attributes, f"TEXCOORD_{index}"), buffers).astype(np.float32)
                uvs.append(np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1))  # glTF's origin is the top-left
            if prim.attributes.NORMAL is not None:
                n = read_accessor(gltf, prim.attributes.NORMAL, buffers).astype(np.float64)
                normals.append(n @ np.linalg.inv(world[:3, :3]).T)
            else:
                normals.append(None)
            records.append(Primitive(node_index, mesh_index, p_index, v_base, len(pos), f_base, len(tri), mirrored))
            v_base += len(pos)
            f_base += len(tri)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"{path.name}: malformed accessor data ({type(exc).__name__}: {exc})") from None
    all_normals = None if any(n is None for n in normals) else np.concatenate(normals)
    mesh = make_mesh(np.concatenate(positions), np.concatenate(faces), np.concatenate(uvs) if index is not None else None,
                     all_normals, name=path.name)
    return GltfMesh(mesh, records, index, common)


def _attribute_names(prim) -> list[str]:  # type: ignore[no-untyped-def]
    attrs = prim.attributes
    names = attrs.__dict__.keys() if hasattr(attrs, "__dict__") else []
    return [k for k in names if getattr(attrs, k, None) is not None]
