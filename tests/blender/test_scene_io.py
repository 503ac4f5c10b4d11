"""scene_io: the mesh a job uploads is the evaluated object (modifiers applied, UVs kept), and
exporting it leaves the user's selection as it was."""
from __future__ import annotations

import json
import struct

import bpy
import pytest

from orbitex_testing import enabled_addon, new_mesh_object


@pytest.fixture(scope="module")
def addon():
    with enabled_addon() as module:
        yield module


def _glb_json(path) -> dict:
    data = path.read_bytes()
    magic, _version, _length = struct.unpack_from("<III", data, 0)
    assert magic == 0x46546C67  # "glTF"
    chunk_length, chunk_type = struct.unpack_from("<II", data, 12)
    assert chunk_type == 0x4E4F534A  # "JSON"
    return json.loads(data[20:20 + chunk_length])


def test_export_applies_modifiers_keeps_uvs_and_selection(addon, tmp_path):
    from orbitex.addon import scene_io

    other = new_mesh_object("Bystander", with_subdivision=False)
    obj = new_mesh_object("Exported", with_subdivision=True)
    other.select_set(True)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = other  # export a non-active object: selection must come back
    try:
        path = scene_io.export_mesh_glb(obj, tmp_path / "mesh.glb")
        gltf = _glb_json(path)
        assert len(gltf["meshes"]) == 1 and len(gltf["nodes"]) == 1  # only `obj`, not the bystander
        primitives = gltf["meshes"][0]["primitives"]
        triangles = sum(gltf["accessors"][p["indices"]]["count"] for p in primitives) // 3
        evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
        evaluated.calc_loop_triangles()
        expected = len(evaluated.loop_triangles)
        obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh_clear()
        base = obj.data
        base.calc_loop_triangles()
        assert expected > 3 * len(base.loop_triangles)  # the subdivision really adds triangles
        assert triangles == expected
        assert all("TEXCOORD_0" in p["attributes"] and "NORMAL" in p["attributes"] for p in primitives)
        assert "materials" not in gltf
        assert other.select_get() and obj.select_get()
        assert bpy.context.view_layer.objects.active == other
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.objects.remove(other)


def test_export_refuses_a_non_mesh(addon, tmp_path):
    from orbitex.addon import scene_io

    bpy.ops.object.empty_add()
    empty = bpy.context.active_object
    try:
        with pytest.raises(ValueError, match="must be a mesh"):
            scene_io.export_mesh_glb(empty, tmp_path / "x.glb")
        assert not (tmp_path / "x.glb").exists()
    finally:
        bpy.data.objects.remove(empty)


def test_load_packed_image_is_named_and_packed(addon, tmp_path):
    from orbitex.addon import scene_io

    src = bpy.data.images.new("src", 4, 2)
    src.pixels[:] = [0.25] * (4 * 2 * 4)
    src.filepath_raw = str(tmp_path / "sheet.png")
    src.file_format = "PNG"
    src.save()
    bpy.data.images.remove(src)
    image = scene_io.load_packed_image(tmp_path / "sheet.png", "Cube orbit preview")
    try:
        assert image.name == "Cube orbit preview"
        assert image.packed_file is not None and tuple(image.size) == (4, 2)
        # The .blend carries the file's bytes, so the downloaded file may go away.
        assert image.packed_file.size == (tmp_path / "sheet.png").stat().st_size
        assert bytes(image.packed_file.data[:8]) == b"\x89PNG\r\n\x1a\n"
    finally:
        bpy.data.images.remove(image)
