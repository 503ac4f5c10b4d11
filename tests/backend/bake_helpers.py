"""Tiny inputs for the bake tests: quads, cubes, GLBs written with pygltflib, rendered view sets."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from backend.assets.mesh import Mesh, make_mesh
from backend.assets.cameras import Camera, look_at


def quad_mesh(size: float = 1.0) -> Mesh:
    """A square in the z = 0 plane facing +Z, UVs covering [0, 1]^2."""
    h = size / 2
    pos = np.array([[-h, -h, 0], [h, -h, 0], [h, h, 0], [-h, h, 0]], dtype=np.float32)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32)
    return make_mesh(pos, np.array([[0, 1, 2], [0, 2, 3]]), uv)


def cube_mesh() -> Mesh:
    """Unit cube centred at the origin, one UV chart per face in a 3 x 2 atlas, outward winding."""
    pos, faces, uvs = [], [], []
    for k, (axis, sign) in enumerate([(0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1)]):
        a1, a2 = [a for a in range(3) if a != axis]
        corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
        p = np.zeros((4, 3))
        p[:, axis] = 0.5 * sign
        p[:, a1] = corners[:, 0] - 0.5
        p[:, a2] = corners[:, 1] - 0.5
        f = np.array([[0, 1, 2], [0, 2, 3]])
        n = np.cross(p[1] - p[0], p[2] - p[0])
        if n[axis] * sign < 0:
            f = f[:, ::-1]
        cu, cv = (k % 3) / 3, (k // 3) / 2
        uv = np.stack([cu + (0.02 + 0.96 * corners[:, 0]) / 3, cv + (0.02 + 0.96 * corners[:, 1]) / 2], 1)
        faces.append(f + 4 * k)
        pos.append(p)
        uvs.append(uv)
    return make_mesh(np.concatenate(pos), np.concatenate(faces), np.concatenate(uvs))


def camera_towards(direction, size: int = 64, distance: float = 2.0, vfov: float = 50.0) -> Camera:  # type: ignore[no-untyped-def]
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    up = np.array([0.0, 1.0, 0.0]) if abs(d[1]) < 0.9 else np.array([0.0, 0.0, 1.0])
    return Camera.from_fov(look_at(d * distance, np.zeros(3), up), vfov, size, size)


def smooth_texture(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    return np.stack([0.5 + 0.4 * np.sin(2 * math.pi * 3 * xx), 0.5 + 0.4 * np.sin(2 * math.pi * 2 * yy),
                     0.5 + 0.3 * np.cos(2 * math.pi * (xx + yy))], -1).astype(np.float32)


def write_glb(path: Path, mesh: Mesh, uv_sets: list[np.ndarray] | None = None,
              matrix: np.ndarray | None = None) -> Path:
    """A one-node GLB from arrays (pygltflib): POSITION, NORMAL, TEXCOORD_n from `uv_sets`
    (OpenGL origin, written in glTF's top-left convention), indices, an optional node matrix."""
    import pygltflib as g

    blob = bytearray()
    accessors, views = [], []

    def add(array: np.ndarray, kind: str, component: int, target: int) -> int:
        data = np.ascontiguousarray(array)
        while len(blob) % 4:
            blob.append(0)
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=data.nbytes, target=target))
        blob.extend(data.tobytes())
        acc = g.Accessor(bufferView=len(views) - 1, componentType=component, count=len(data), type=kind)
        if kind == "VEC3":
            acc.min, acc.max = data.min(0).tolist(), data.max(0).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    attrs = g.Attributes(POSITION=add(mesh.positions.astype(np.float32), "VEC3", g.FLOAT, g.ARRAY_BUFFER),
                         NORMAL=add(mesh.normals.astype(np.float32), "VEC3", g.FLOAT, g.ARRAY_BUFFER))
    for i, uv in enumerate(uv_sets or []):
        flipped = np.stack([uv[:, 0], 1 - uv[:, 1]], 1).astype(np.float32)
        setattr(attrs, f"TEXCOORD_{i}", add(flipped, "VEC2", g.FLOAT, g.ARRAY_BUFFER))
    indices = add(mesh.faces.astype(np.uint32).ravel(), "SCALAR", g.UNSIGNED_INT, g.ELEMENT_ARRAY_BUFFER)
    node = g.Node(mesh=0)
    if matrix is not None:
        node.matrix = np.asarray(matrix, dtype=float).T.ravel().tolist()
    gltf = g.GLTF2(scene=0, scenes=[g.Scene(nodes=[0])], nodes=[node],
                   meshes=[g.Mesh(primitives=[g.Primitive(attributes=attrs, indices=indices)])],
                   accessors=accessors, bufferViews=views, buffers=[g.Buffer(byteLength=len(blob))])
    gltf.set_binary_blob(bytes(blob))
    gltf.save_binary(str(path))
    return path


def detailed_texture(size: int, cells: int = 16) -> np.ndarray:
    """Smooth colours times a checker of `cells` x `cells` squares: edges for flow to lock onto."""
    yy, xx = np.mgrid[0:size, 0:size]
    checker = ((xx * cells // size + yy * cells // size) % 2).astype(np.float32)
    return np.clip(smooth_texture(size) * (0.55 + 0.45 * checker[..., None]), 0, 1).astype(np.float32)


def shift_image(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The image moved by (dx, dy) px (content at x goes to x + dx), bilinear, borders replicated."""
    import cv2

    h, w = image.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(np.ascontiguousarray(image, dtype=np.float32), xs - dx, ys - dy, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
