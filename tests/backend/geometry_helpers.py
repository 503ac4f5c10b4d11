"""Small meshes and files for the geometry/render tests (no fixtures shared with other topics)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from backend.assets.mesh import Mesh, make_mesh, normalize


def sphere(subdivisions: int = 4) -> Mesh:
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions)
    return normalize(make_mesh(s.vertices, s.faces))[0]


def cube() -> Mesh:
    import trimesh

    b = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    return make_mesh(b.vertices, b.faces)


def thin_triangles(segments: int = 360) -> Mesh:
    """A wavy disk made of long slivers (a triangle fan around a centre, then a ring of slivers),
    tilted so the camera sees it obliquely, in front of a closing back plate."""
    angles = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    rim = np.stack([0.5 * np.cos(angles), 0.5 * np.sin(angles), 0.05 * np.sin(5 * angles)], 1)
    outer = np.stack([0.52 * np.cos(angles + 0.003), 0.52 * np.sin(angles + 0.003), 0.05 * np.sin(5 * angles)], 1)
    back = np.array([[-0.6, -0.6, -0.3], [0.6, -0.6, -0.3], [0.6, 0.6, -0.3], [-0.6, 0.6, -0.3]])
    positions = np.concatenate([[[0, 0, 0.02]], rim, outer, back])
    i = np.arange(segments)
    j = (i + 1) % segments
    fan = np.stack([np.zeros(segments, int), 1 + i, 1 + j], 1)
    ring = np.concatenate([np.stack([1 + i, 1 + segments + i, 1 + j], 1),
                           np.stack([1 + j, 1 + segments + i, 1 + segments + j], 1)])
    b = 1 + 2 * segments
    plate = np.array([[b, b + 1, b + 2], [b, b + 2, b + 3]])
    tilt = np.array([[1, 0, 0], [0, np.cos(0.6), -np.sin(0.6)], [0, np.sin(0.6), np.cos(0.6)]])
    return make_mesh(positions @ tilt.T, np.concatenate([fan, ring, plate]))


def write_glb_without_material(path: Path, positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray) -> Path:
    """A GLB with POSITION + TEXCOORD_0 + indices and no material at all (as some exporters write)."""
    import pygltflib

    pos = positions.astype(np.float32).tobytes()
    uv = uvs.astype(np.float32).tobytes()
    idx = faces.astype(np.uint32).tobytes()
    blob = pos + uv + idx
    gltf = pygltflib.GLTF2(
        scene=0, scenes=[pygltflib.Scene(nodes=[0])], nodes=[pygltflib.Node(mesh=0)],
        meshes=[pygltflib.Mesh(primitives=[pygltflib.Primitive(
            attributes=pygltflib.Attributes(POSITION=0, TEXCOORD_0=1), indices=2)])],
        accessors=[
            pygltflib.Accessor(bufferView=0, componentType=pygltflib.FLOAT, count=len(positions), type="VEC3",
                               min=positions.min(0).tolist(), max=positions.max(0).tolist()),
            pygltflib.Accessor(bufferView=1, componentType=pygltflib.FLOAT, count=len(uvs), type="VEC2"),
            pygltflib.Accessor(bufferView=2, componentType=pygltflib.UNSIGNED_INT, count=faces.size, type="SCALAR"),
        ],
        bufferViews=[
            pygltflib.BufferView(buffer=0, byteOffset=0, byteLength=len(pos), target=pygltflib.ARRAY_BUFFER),
            pygltflib.BufferView(buffer=0, byteOffset=len(pos), byteLength=len(uv), target=pygltflib.ARRAY_BUFFER),
            pygltflib.BufferView(buffer=0, byteOffset=len(pos) + len(uv), byteLength=len(idx),
                                 target=pygltflib.ELEMENT_ARRAY_BUFFER),
        ],
        buffers=[pygltflib.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(blob)
    gltf.save_binary(str(path))
    return path


def png_with_header_size(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height (to test size limits without decoding)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path
