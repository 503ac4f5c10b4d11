"""Animated glTF: vertex positions of every triangle primitive at sampled animation times.

Evaluates what a glTF viewer shows: animation channels (translation, rotation, scale, morph
weights; LINEAR with slerp for rotations, STEP; CUBICSPLINE by its keyframe values) set the
nodes' local transforms, morph targets are added to the base positions, and skinned primitives
are posed by linear blend skinning (joint world matrix x inverse bind matrix; the mesh node's own
transform is ignored, as the spec says). Vertices come in the order of `load_gltf_mesh`, so the
posed positions line up with its Mesh (faces, UVs) frame by frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .gltf_primitives import GltfMesh, _local_matrix, buffer_bytes, load_gltf, load_gltf_mesh, read_accessor


def _quat_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q / max(np.linalg.norm(q), 1e-12)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    dot = float(np.dot(a, b))
    if dot < 0:
        b, dot = -b, -dot
    if dot > 0.9995:
        q = a + t * (b - a)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - t) * theta) * a + np.sin(t * theta) * b) / np.sin(theta)


def _sample(times: np.ndarray, values: np.ndarray, t: float, interpolation: str, rotation: bool) -> np.ndarray:
    if interpolation == "CUBICSPLINE":  # (in-tangent, value, out-tangent) per key: keep the values
        values = values.reshape(len(times), 3, -1)[:, 1]
    else:
        values = values.reshape(len(times), -1)
    if t <= times[0]:
        return values[0]
    if t >= times[-1]:
        return values[-1]
    k = int(np.searchsorted(times, t, side="right")) - 1
    if interpolation == "STEP":
        return values[k]
    f = (t - times[k]) / max(times[k + 1] - times[k], 1e-12)
    return _slerp(values[k], values[k + 1], f) if rotation else values[k] * (1 - f) + values[k + 1] * f


def animation_times(path: str | Path) -> np.ndarray:
    """The sorted keyframe times of every channel of the first animation."""
    gltf = load_gltf(path)
    if not gltf.animations:
        raise InputError(f"{Path(path).name}: the glTF has no animation")
    buffers = buffer_bytes(gltf, Path(path).parent)
    anim = gltf.animations[0]
    times = [read_accessor(gltf, s.input, buffers).reshape(-1) for s in anim.samplers]
    return np.unique(np.concatenate(times)).astype(np.float64)


def posed_positions(path: str | Path, times: np.ndarray, loaded: GltfMesh | None = None) -> np.ndarray:
    """(T, V, 3) float32 positions of `load_gltf_mesh(path)`'s vertices at each time of `times`."""
    path = Path(path)
    gltf = load_gltf(path)
    buffers = buffer_bytes(gltf, path.parent)
    loaded = loaded or load_gltf_mesh(path)
    anim = gltf.animations[0] if gltf.animations else None
    channels = []
    if anim is not None:
        for ch in anim.channels:
            s = anim.samplers[ch.sampler]
            channels.append((ch.target.node, ch.target.path, read_accessor(gltf, s.input, buffers).reshape(-1),
                             read_accessor(gltf, s.output, buffers).astype(np.float64), s.interpolation or "LINEAR"))
    out = np.zeros((len(times), loaded.mesh.num_vertices, 3), dtype=np.float32)
    cache: dict[tuple[int, int], dict] = {}
    for ti, t in enumerate(times):
        trs: dict[int, dict] = {}
        for node, kind, key_t, key_v, interp in channels:
            trs.setdefault(node, {})[kind] = _sample(key_t, key_v, float(t), interp, kind == "rotation")
        world = _world_matrices(gltf, trs)
        for rec in loaded.primitives:
            prim = gltf.meshes[rec.mesh].primitives[rec.primitive]
            key = (rec.mesh, rec.primitive)
            if key not in cache:
                cache[key] = _primitive_data(gltf, prim, buffers)
            data = cache[key]
            pos = data["position"].copy()
            if data["targets"]:
                weights = trs.get(rec.node, {}).get("weights")
                if weights is None:
                    weights = np.asarray(gltf.meshes[rec.mesh].weights or [0.0] * len(data["targets"]), np.float64)
                for w, target in zip(weights, data["targets"]):
                    pos += w * target
            node = gltf.nodes[rec.node]
            if node.skin is not None:
                skin = gltf.skins[node.skin]
                joints = np.stack([world[j] for j in skin.joints])
                inv = (read_accessor(gltf, skin.inverseBindMatrices, buffers).reshape(-1, 4, 4).transpose(0, 2, 1)
                       if skin.inverseBindMatrices is not None else np.tile(np.eye(4), (len(skin.joints), 1, 1)))
                mats = joints @ inv  # (J, 4, 4)
                blend = np.einsum("vk,vkij->vij", data["weights"], mats[data["joints"]])
                posed = np.einsum("vij,vj->vi", blend[:, :3, :3], pos) + blend[:, :3, 3]
            else:
                m = world[rec.node]
                posed = pos @ m[:3, :3].T + m[:3, 3]
            out[ti, rec.vertex_start:rec.vertex_start + rec.vertex_count] = posed
    return out


def _primitive_data(gltf, prim, buffers: list[bytes]) -> dict:  # type: ignore[no-untyped-def]
    attrs = prim.attributes
    data = {"position": read_accessor(gltf, attrs.POSITION, buffers).astype(np.float64),
            "targets": [read_accessor(gltf, t["POSITION"], buffers).astype(np.float64)
                        for t in (prim.targets or []) if t.get("POSITION") is not None]}
    if getattr(attrs, "JOINTS_0", None) is not None and getattr(attrs, "WEIGHTS_0", None) is not None:
        data["joints"] = read_accessor(gltf, attrs.JOINTS_0, buffers).astype(np.int64)
        weights = read_accessor(gltf, attrs.WEIGHTS_0, buffers).astype(np.float64)
        data["weights"] = weights / np.maximum(weights.sum(1, keepdims=True), 1e-12)
    return data


def _world_matrices(gltf, trs: dict[int, dict]) -> dict[int, np.ndarray]:  # type: ignore[no-untyped-def]
    """World matrix of every node, with animated translation / rotation / scale applied."""
    children = {c for n in gltf.nodes for c in (n.children or [])}
    roots = [i for i in range(len(gltf.nodes)) if i not in children]
    world: dict[int, np.ndarray] = {}
    stack = [(r, np.eye(4)) for r in roots]
    while stack:
        index, parent = stack.pop()
        node = gltf.nodes[index]
        if index in trs and any(k in trs[index] for k in ("translation", "rotation", "scale")):
            anim = trs[index]
            t = anim.get("translation", np.asarray(node.translation or [0, 0, 0], np.float64))
            r = anim.get("rotation", np.asarray(node.rotation or [0, 0, 0, 1], np.float64))
            s = anim.get("scale", np.asarray(node.scale or [1, 1, 1], np.float64))
            local = np.eye(4)
            local[:3, :3] = _quat_matrix(np.asarray(r)) @ np.diag(s)
            local[:3, 3] = t
        else:
            local = _local_matrix(node)
        world[index] = parent @ local
        stack.extend((c, world[index]) for c in (node.children or []))
    return world
