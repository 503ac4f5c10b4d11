"""Read the triangles, positions and UVs of a GLB (the files Orbitex exports and gets back).

Plain Python + numpy (Blender ships numpy; no bpy here). Positions come out in the file's world
frame (every node transform applied), UVs in glTF's convention (v down from the top-left).
Only what applying a result needs: triangle primitives, POSITION, indices, TEXCOORD_n, and the
texCoord set the first material's base-colour texture uses.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_GLB_MAGIC, _JSON, _BIN = 0x46546C67, 0x4E4F534A, 0x004E4942
_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_TRIANGLES = 4


class GlbError(ValueError):
    """The file is not a GLB this reader understands; the message names the file."""


@dataclass
class GlbMesh:
    positions: np.ndarray  # (V, 3) float64, world frame of the file
    triangles: np.ndarray  # (T, 3) int64, file order, corners as stored (winding never flipped)
    uv_sets: dict[int, np.ndarray]  # TEXCOORD index -> (V, 2) float64 (only sets on every primitive)
    base_color_uv: int | None  # texCoord of the first base-colour texture, None without one
    node_matrix: np.ndarray  # (4, 4) world matrix of the first mesh node

    @property
    def corner_positions(self) -> np.ndarray:
        return self.positions[self.triangles]  # (T, 3, 3)


def _chunks(data: bytes, name: str) -> tuple[dict, bytes]:
    if len(data) < 20:
        raise GlbError(f"{name}: too short to be a GLB")
    magic, _version, _length = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC:
        raise GlbError(f"{name}: not a GLB (binary glTF) file")
    doc, binary, offset = None, b"", 12
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from("<II", data, offset)
        body = data[offset + 8: offset + 8 + length]
        if kind == _JSON:
            doc = json.loads(body.decode("utf-8"))
        elif kind == _BIN and not binary:
            binary = body
        offset += 8 + length
    if doc is None:
        raise GlbError(f"{name}: the GLB has no JSON chunk")
    return doc, binary


def _accessor(doc: dict, binary: bytes, index: int, name: str) -> np.ndarray:
    acc = doc["accessors"][index]
    if "sparse" in acc:
        raise GlbError(f"{name}: sparse accessors are not supported (accessor {index})")
    dtype = np.dtype(_COMPONENTS[acc["componentType"]])
    width, count = _WIDTHS[acc["type"]], acc["count"]
    if "bufferView" not in acc:
        return np.zeros((count, width), dtype=np.float64)
    view = doc["bufferViews"][acc["bufferView"]]
    if view.get("buffer", 0) != 0 or doc["buffers"][0].get("uri"):
        raise GlbError(f"{name}: external buffers are not supported")
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride") or dtype.itemsize * width
    rows = np.ndarray((count, width), dtype=dtype, buffer=binary, offset=start, strides=(stride, dtype.itemsize))
    out = rows.astype(np.float64)
    if acc.get("normalized") and dtype.kind in "iu":
        out = np.maximum(out / np.iinfo(dtype).max, -1.0)
    return out


def _local_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T  # glTF is column-major
    t = np.asarray(node.get("translation", (0, 0, 0)), dtype=np.float64)
    x, y, z, w = node.get("rotation", (0, 0, 0, 1))
    s = np.asarray(node.get("scale", (1, 1, 1)), dtype=np.float64)
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    m = np.eye(4)
    m[:3, :3] = r * s
    m[:3, 3] = t
    return m


def _mesh_nodes(doc: dict) -> list[tuple[int, np.ndarray]]:
    """(mesh index, world matrix) for every node with a mesh, scene order."""
    nodes = doc.get("nodes", [])
    scenes = doc.get("scenes") or [{"nodes": list(range(len(nodes)))}]
    roots = scenes[doc.get("scene", 0)].get("nodes", [])
    found: list[tuple[int, np.ndarray]] = []
    stack = [(i, np.eye(4)) for i in reversed(roots)]
    while stack:
        index, parent = stack.pop()
        node = nodes[index]
        world = parent @ _local_matrix(node)
        if "mesh" in node:
            found.append((node["mesh"], world))
        stack.extend((child, world) for child in reversed(node.get("children", [])))
    return found


def read_glb(path: str | Path) -> GlbMesh:
    path = Path(path)
    try:
        doc, binary = _chunks(path.read_bytes(), path.name)
        mesh_nodes = _mesh_nodes(doc)
        positions, triangles, uv_lists, base = [], [], [], 0
        for mesh_index, world in mesh_nodes:
            for prim in doc["meshes"][mesh_index]["primitives"]:
                if prim.get("mode", _TRIANGLES) != _TRIANGLES or "POSITION" not in prim["attributes"]:
                    continue
                pos = _accessor(doc, binary, prim["attributes"]["POSITION"], path.name)
                tri = (_accessor(doc, binary, prim["indices"], path.name).astype(np.int64).reshape(-1, 3)
                       if "indices" in prim else np.arange(len(pos) - len(pos) % 3).reshape(-1, 3))
                positions.append(pos @ world[:3, :3].T + world[:3, 3])
                triangles.append(tri + base)
                base += len(pos)
                uv_lists.append({int(k.split("_")[1]): _accessor(doc, binary, v, path.name)
                                 for k, v in prim["attributes"].items() if k.startswith("TEXCOORD_")})
    except GlbError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, UnicodeDecodeError, OSError) as exc:
        raise GlbError(f"{path.name}: unreadable glTF data ({type(exc).__name__}: {exc})") from None
    if not triangles:
        raise GlbError(f"{path.name}: the file holds no triangle mesh")
    common = set.intersection(*(set(u) for u in uv_lists))
    uv_sets = {i: np.concatenate([u[i] for u in uv_lists]) for i in sorted(common)}
    base_color_uv = None
    for material in doc.get("materials", []):
        texture = material.get("pbrMetallicRoughness", {}).get("baseColorTexture")
        if texture is not None:
            base_color_uv = int(texture.get("texCoord", 0))
            break
    return GlbMesh(np.concatenate(positions), np.concatenate(triangles), uv_sets, base_color_uv, mesh_nodes[0][1])
