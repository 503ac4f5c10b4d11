"""Small inputs for the refine tests: a textured can GLB, a subject photo, Gaussians on the can."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.synthetic import can_mesh, plaid_texture


def can_glb(path: Path, texture_size: int = 64, n: int = 32) -> Path:
    import trimesh
    from PIL import Image

    mesh = can_mesh(n=n)
    image = Image.fromarray((plaid_texture(texture_size) * 255 + 0.5).astype(np.uint8))
    visual = trimesh.visual.TextureVisuals(uv=mesh.uvs, material=trimesh.visual.material.PBRMaterial(baseColorTexture=image))
    trimesh.Trimesh(mesh.positions, mesh.faces, process=False, visual=visual).export(path)
    return path


def subject_png(path: Path, size: int = 48) -> Path:
    from PIL import Image

    rgb = (plaid_texture(size) * 255).astype(np.uint8)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[size // 6:-size // 6, size // 4:-size // 4, :3] = rgb[size // 6:-size // 6, size // 4:-size // 4]
    rgba[size // 6:-size // 6, size // 4:-size // 4, 3] = 255
    Image.fromarray(rgba).save(path)
    return path


def can_ply(path: Path, count: int = 400) -> Path:
    from backend.pipelines.reconstruct_fit import texture_color_fn
    from backend.splats.model import from_mesh
    from backend.splats.ply import write_ply

    mesh = can_mesh(n=32)
    g = from_mesh(mesh, count, texture_color_fn(mesh, plaid_texture(64)), sh_degree=0, opacity=0.9)
    return write_ply(g, path)


def two_bone_glb(path: Path, texture_size: int = 64) -> Path:
    """A skinned can (two joints: the upper half bends about Z, 0 -> 50 -> 0 degrees over 1 s) with
    a plaid base-colour texture, written with pygltflib."""
    import io
    import math

    import pygltflib as g
    from PIL import Image

    mesh = can_mesh(n=24)
    pos = mesh.positions.astype(np.float32)
    y = pos[:, 1]
    w1 = np.clip((y + 0.05) / 0.1, 0, 1).astype(np.float32)  # lower half: joint 0, upper: joint 1
    joints = np.zeros((len(pos), 4), np.uint16)
    weights = np.zeros((len(pos), 4), np.float32)
    weights[:, 0], weights[:, 1] = 1 - w1, w1
    joints[:, 1] = (w1 > 0)  # no joint index under a zero weight (the validator asks so)
    upper = w1 >= 1
    joints[upper, :2], weights[upper, :2] = [1, 0], [1.0, 0.0]
    uv = np.stack([mesh.uvs[:, 0], 1 - mesh.uvs[:, 1]], 1).astype(np.float32)
    inv_bind = np.stack([np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32)])
    inv_bind[0][:3, 3] = [0, 0.4, 0]  # joint 0 sits at y = -0.4
    times = np.array([0.0, 0.5, 1.0], np.float32)
    half = [math.radians(a) / 2 for a in (0.0, 50.0, 0.0)]
    rotations = np.array([[0, 0, math.sin(h), math.cos(h)] for h in half], np.float32)
    png = io.BytesIO()
    Image.fromarray((plaid_texture(texture_size) * 255 + 0.5).astype(np.uint8)).save(png, format="PNG")
    blobs = [pos, uv, joints, weights, mesh.faces.astype(np.uint32).reshape(-1),
             inv_bind.transpose(0, 2, 1).reshape(-1, 16).copy(), times, rotations]
    data, views = b"", []
    for b in blobs + [np.frombuffer(png.getvalue(), np.uint8)]:
        data += b"\0" * (-len(data) % 4)
        views.append(g.BufferView(buffer=0, byteOffset=len(data), byteLength=b.nbytes))
        data += b.tobytes()
    spec = [(5126, "VEC3", len(pos)), (5126, "VEC2", len(pos)), (5123, "VEC4", len(pos)), (5126, "VEC4", len(pos)),
            (5125, "SCALAR", mesh.faces.size), (5126, "MAT4", 2), (5126, "SCALAR", 3), (5126, "VEC4", 3)]
    accessors = [g.Accessor(bufferView=i, componentType=c, type=t, count=n) for i, (c, t, n) in enumerate(spec)]
    accessors[0].min, accessors[0].max = pos.min(0).tolist(), pos.max(0).tolist()
    accessors[6].min, accessors[6].max = [0.0], [1.0]
    gltf = g.GLTF2(
        scene=0, scenes=[g.Scene(nodes=[0, 1])],
        nodes=[g.Node(mesh=0, skin=0), g.Node(translation=[0, -0.4, 0], children=[2]), g.Node(translation=[0, 0.4, 0])],
        meshes=[g.Mesh(primitives=[g.Primitive(attributes=g.Attributes(POSITION=0, TEXCOORD_0=1, JOINTS_0=2, WEIGHTS_0=3),
                                               indices=4, material=0)])],
        skins=[g.Skin(joints=[1, 2], inverseBindMatrices=5)],
        animations=[g.Animation(samplers=[g.AnimationSampler(input=6, output=7)],
                                channels=[g.AnimationChannel(sampler=0, target=g.AnimationChannelTarget(node=2, path="rotation"))])],
        materials=[g.Material(pbrMetallicRoughness=g.PbrMetallicRoughness(baseColorTexture=g.TextureInfo(index=0)))],
        textures=[g.Texture(source=0)], images=[g.Image(bufferView=len(blobs), mimeType="image/png")],
        accessors=accessors, bufferViews=views, buffers=[g.Buffer(byteLength=len(data))])
    gltf.set_binary_blob(data)
    gltf.save_binary(str(path))
    return path
