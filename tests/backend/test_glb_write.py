"""GLB writing keeps the input and leaves nothing the glTF validator calls unused: the input's old
material goes only when no primitive uses it any more; bufferViews get their targets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib as g

from backend.assets.glb_write import png_bytes, write_textured_glb
from backend.assets.gltf_primitives import load_gltf, load_gltf_mesh

from bake_helpers import cube_mesh, write_glb


def _with_old_materials(path: Path, lines_keep_one: bool) -> Path:
    """The cube GLB with a textured 'old' material on its triangles and, optionally, a LINES
    primitive using a second textured material; the input's views lose their targets."""
    gltf = load_gltf(path)
    blob = bytearray(gltf.binary_blob())
    for name in ("old", "lines"):
        png = png_bytes(np.full((4, 4, 3), 0.5, np.float32))
        while len(blob) % 4:
            blob.append(0)
        gltf.bufferViews.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(png)))
        blob.extend(png)
        gltf.images.append(g.Image(bufferView=len(gltf.bufferViews) - 1, mimeType="image/png", name=name))
        gltf.samplers.append(g.Sampler())
        gltf.textures.append(g.Texture(source=len(gltf.images) - 1, sampler=len(gltf.samplers) - 1))
        gltf.materials.append(g.Material(name=name, pbrMetallicRoughness=g.PbrMetallicRoughness(
            baseColorTexture=g.TextureInfo(index=len(gltf.textures) - 1))))
    prim = gltf.meshes[0].primitives[0]
    prim.material = 0
    if lines_keep_one:
        gltf.meshes[0].primitives.append(g.Primitive(attributes=g.Attributes(POSITION=prim.attributes.POSITION,
                                                                           TEXCOORD_0=prim.attributes.TEXCOORD_0),
                                                     mode=g.LINES, material=1))
    for view in gltf.bufferViews:
        view.target = None
    gltf.buffers[0].byteLength = len(blob)
    gltf.set_binary_blob(bytes(blob))
    gltf.save_binary(str(path))
    return path


def test_old_material_dropped_when_unused_and_kept_when_used(tmp_path: Path) -> None:
    mesh = cube_mesh()
    texture = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    for keep in (False, True):
        source = _with_old_materials(write_glb(tmp_path / f"in_{keep}.glb", mesh, [mesh.uvs]), keep)
        out = write_textured_glb(source, tmp_path / f"out_{keep}.glb", texture, load_gltf_mesh(source).mesh)
        gltf = load_gltf(out)
        names = [m.name for m in gltf.materials]
        assert names == (["lines", "orbitex_bake"] if keep else ["orbitex_bake"])
        assert [i.name for i in gltf.images] == (["lines", "orbitex_bake"] if keep else ["orbitex_bake"])
        assert len(gltf.textures) == len(gltf.samplers) == len(names)
        prims = gltf.meshes[0].primitives
        assert gltf.materials[prims[0].material].name == "orbitex_bake"
        if keep:
            lines = gltf.materials[prims[1].material]
            assert lines.name == "lines"
            assert gltf.images[gltf.textures[lines.pbrMetallicRoughness.baseColorTexture.index].source].name == "lines"
        targets = {gltf.accessors[v].bufferView: gltf.bufferViews[gltf.accessors[v].bufferView].target
                   for v in prims[0].attributes.__dict__.values() if isinstance(v, int)}
        assert set(targets.values()) == {g.ARRAY_BUFFER}
        assert gltf.bufferViews[gltf.accessors[prims[0].indices].bufferView].target == g.ELEMENT_ARRAY_BUFFER
        assert all(gltf.bufferViews[i.bufferView].target is None for i in gltf.images)
        np.testing.assert_allclose(load_gltf_mesh(out).mesh.positions, mesh.positions, atol=1e-6)
