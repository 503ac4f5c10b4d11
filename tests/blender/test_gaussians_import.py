"""3DGS PLY import on the Blender side: a point-cloud object with every property as an attribute
(exact values), the axis turn in its transform, a geometry-nodes preview whose ellipsoids follow
the scales and rotations and whose colour and opacity follow the SH DC term and opacity; damaged
files give a clear error and add nothing. PLYs are written here with the standard library."""
from __future__ import annotations

import math
import random
import struct
from pathlib import Path

import bpy
import numpy as np
import pytest
from mathutils import Matrix, Quaternion, Vector

from orbitex_testing import import_addon

C0 = 0.28209479177387814


@pytest.fixture(scope="module")
def orbitex():
    return import_addon()


def property_names(degree: int) -> list[str]:
    rest = 3 * ((degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def write_ply(path: Path, names: list[str], rows: list[list[float]], order: str = "<", cut: int = 0,
              header_extra: str = "") -> Path:
    """A binary PLY with one float vertex element, with struct; `cut` drops bytes from the end."""
    fmt = "binary_little_endian" if order == "<" else "binary_big_endian"
    header = (f"ply\nformat {fmt} 1.0\ncomment test file\n{header_extra}element vertex {len(rows)}\n"
              + "".join(f"property float {n}\n" for n in names) + "end_header\n").encode("ascii")
    body = b"".join(struct.pack(f"{order}{len(names)}f", *row) for row in rows)
    data = header + body
    path.write_bytes(data[:len(data) - cut] if cut else data)
    return path


def random_rows(names: list[str], count: int, seed: int = 0) -> list[list[float]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        row = {n: rng.uniform(-1.0, 1.0) for n in names}
        for i in range(3):
            row[f"scale_{i}"] = math.log(rng.uniform(0.02, 0.2))
        row["rot_0"] = rng.uniform(0.2, 1.0)  # never a zero quaternion
        rows.append([row[n] for n in names])
    return rows


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def new_datablocks() -> tuple[int, int, int]:
    return len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.pointclouds)


def attribute_values(obj, name: str) -> np.ndarray:
    attribute = obj.data.attributes[name]
    if attribute.data_type == "FLOAT_VECTOR":
        out = np.zeros(len(attribute.data) * 3, np.float32)
        attribute.data.foreach_get("vector", out)
        return out.reshape(-1, 3)
    out = np.zeros(len(attribute.data), np.float32)
    attribute.data.foreach_get("value", out)
    return out


@pytest.mark.parametrize("degree,order", [(0, "<"), (1, ">"), (3, "<")])
def test_every_property_arrives_as_an_exact_attribute(orbitex, tmp_path, degree, order):
    from orbitex.addon.scene_gaussians import PREVIEW_MODIFIER, Y_UP_TO_Z_UP, import_gaussians

    names = property_names(degree)
    rows = random_rows(names, 257, seed=degree)
    path = write_ply(tmp_path / "g.ply", names, rows, order)
    bpy.ops.mesh.primitive_cube_add()
    bystander = bpy.context.active_object
    before_meshes = set(bpy.data.meshes)
    obj = import_gaussians(path, "Splats")
    try:
        assert obj.type == "POINTCLOUD" and len(obj.data.points) == 257
        table = f32(rows)
        expected_attributes = (set(names) - {"x", "y", "z"}) | {"position"}
        assert {a.name for a in obj.data.attributes} == expected_attributes
        np.testing.assert_array_equal(attribute_values(obj, "position"), table[:, :3])
        for i, name in enumerate(names[3:], start=3):
            assert obj.data.attributes[name].data_type == "FLOAT" and obj.data.attributes[name].domain == "POINT"
            np.testing.assert_array_equal(attribute_values(obj, name), table[:, i], err_msg=name)
        # glTF +Y up -> Blender +Z up, as Blender's glTF importer maps it: (x, y, z) -> (x, -z, y)
        assert np.allclose(np.array(obj.matrix_world), np.array(Y_UP_TO_Z_UP))
        world = obj.matrix_world @ Vector(table[5, :3].tolist())
        assert np.allclose(world, [table[5, 0], -table[5, 2], table[5, 1]], atol=1e-6)
        assert set(bpy.data.meshes) == before_meshes  # the helper mesh did not stay behind
        assert obj.modifiers[PREVIEW_MODIFIER].node_group is not None
        assert bpy.context.view_layer.objects.active == bystander and bystander.select_get()
        assert obj.name in bpy.context.scene.collection.objects
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.objects.remove(bystander)


def test_import_places_the_object_in_a_given_frame_and_collection(orbitex, tmp_path):
    from orbitex.addon.scene_gaussians import Y_UP_TO_Z_UP, import_gaussians

    names = property_names(0)
    path = write_ply(tmp_path / "g.ply", names, random_rows(names, 4))
    collection = bpy.data.collections.new("Results")
    bpy.context.scene.collection.children.link(collection)
    frame = Matrix.Translation((1, 2, 3)) @ Matrix.Rotation(0.4, 4, "Z") @ Y_UP_TO_Z_UP
    obj = import_gaussians(path, "Placed", frame, [collection])
    try:
        assert np.allclose(np.array(obj.matrix_world), np.array(frame), atol=1e-6)
        assert list(obj.users_collection) == [collection]
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.collections.remove(collection)


def _instances(obj) -> list[Matrix]:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    return [inst.matrix_world.copy() for inst in depsgraph.object_instances
            if inst.is_instance and inst.parent is not None and inst.parent.original == obj]


def test_preview_ellipsoids_follow_scales_and_rotations(orbitex, tmp_path):
    from orbitex.addon.scene_gaussians import DEFAULT_SIZE, import_gaussians

    names = property_names(1)
    rows = random_rows(names, 6, seed=7)
    for row in rows:  # unnormalized quaternions: the preview must normalize them
        for k in range(4):
            row[names.index(f"rot_{k}")] *= 3.0
    path = write_ply(tmp_path / "g.ply", names, rows)
    obj = import_gaussians(path, "Ellipsoids")
    try:
        instances = _instances(obj)
        assert len(instances) == 6
        table = f32(rows)
        expected = []
        for row in table:
            q = Quaternion([float(row[names.index(f"rot_{k}")]) for k in range(4)]).normalized()
            s = [DEFAULT_SIZE * math.exp(float(row[names.index(f"scale_{k}")])) for k in range(3)]
            local = Matrix.Translation(Vector(row[:3].tolist())) @ q.to_matrix().to_4x4() @ Matrix.Diagonal((*s, 1.0))
            expected.append(np.array(obj.matrix_world @ local))
        for got in instances:  # instance order is not promised: match each to its Gaussian
            assert min(np.abs(np.array(got) - e).max() for e in expected) < 1e-4
    finally:
        bpy.data.objects.remove(obj)


def _render(scene, camera, location) -> np.ndarray:
    camera.location = location
    camera.rotation_euler = (-Vector(location)).to_track_quat("-Z", "Y").to_euler()
    scene.render.filepath = str(Path(bpy.app.tempdir or "/tmp") / "orbitex-gaussian-preview.exr")
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath, check_existing=False)
    try:
        return np.array(image.pixels[:], dtype=np.float32).reshape(image.size[1], image.size[0], 4)
    finally:
        bpy.data.images.remove(image)


def test_preview_shows_the_dc_colour_from_every_side(orbitex, tmp_path):
    """Cycles render of one opaque Gaussian from the front, the side and above: the same colour,
    the sRGB value 0.5 + C0 * f_dc decoded to linear, wherever it is seen."""
    from orbitex.addon.scene_gaussians import import_gaussians

    names = property_names(0)
    srgb = (0.8, 0.35, 0.1)
    values = dict(zip(names, [0.0] * len(names)))
    values.update({f"f_dc_{i}": (c - 0.5) / C0 for i, c in enumerate(srgb)})
    values.update(opacity=12.0, scale_0=math.log(0.3), scale_1=math.log(0.2), scale_2=math.log(0.25), rot_0=1.0)
    path = write_ply(tmp_path / "one.ply", names, [[values[n] for n in names]])
    scene = bpy.context.scene
    saved = (scene.render.engine, scene.camera, scene.world, scene.view_settings.view_transform,
             scene.render.film_transparent)
    hidden = [o for o in scene.objects if not o.hide_render]  # the startup cube would hide the splat
    for o in hidden:
        o.hide_render = True
    obj = import_gaussians(path, "Opaque")
    camera = bpy.data.objects.new("Preview Camera", bpy.data.cameras.new("Preview Camera"))
    scene.collection.objects.link(camera)
    world = bpy.data.worlds.new("Black")
    world.color = (0, 0, 0)
    try:
        scene.render.engine, scene.camera, scene.world = "CYCLES", camera, world
        scene.render.film_transparent = True  # alpha = coverage
        scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", 4, False
        scene.render.resolution_x = scene.render.resolution_y = 24
        scene.render.resolution_percentage = 100
        scene.render.image_settings.file_format = "OPEN_EXR"
        scene.view_settings.view_transform = "Standard"
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in srgb]
        for location in [(0, -4, 0), (4, 0, 0), (0, 0, 4), (-2.5, 2.5, -2.5)]:
            pixels = _render(scene, camera, location)
            covered = pixels[..., 3] > 0.999
            assert covered.sum() >= 4, location
            np.testing.assert_allclose(pixels[covered][:, :3].max(axis=0), linear, rtol=2e-3, err_msg=str(location))
    finally:
        (scene.render.engine, scene.camera, scene.world, scene.view_settings.view_transform,
         scene.render.film_transparent) = saved
        for o in hidden:
            o.hide_render = False
        bpy.data.objects.remove(camera)
        bpy.data.objects.remove(obj)
        bpy.data.worlds.remove(world)


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    names = property_names(1)
    rows = random_rows(names, 50)
    nan_rows = [list(r) for r in rows]
    nan_rows[17][names.index("scale_1")] = float("nan")
    no_opacity = [n for n in names if n != "opacity"]
    good = write_ply(tmp_path / "good.ply", names, rows)
    return {
        "truncated": (write_ply(tmp_path / "truncated.ply", names, rows, cut=100), "truncated"),
        "header only": (good.with_name("header_only.ply"), "truncated"),
        "no end_header": (tmp_path / "no_end.ply", "end_header"),
        "not a ply": (tmp_path / "photo.ply", "not a PLY file"),
        "missing opacity": (write_ply(tmp_path / "no_opacity.ply", no_opacity,
                                      [[v for n, v in zip(names, r) if n != "opacity"] for r in rows]),
                            "missing properties opacity"),
        "NaN": (write_ply(tmp_path / "nan.ply", names, nan_rows), "Gaussian 17 has non-finite scale_1"),
        "odd f_rest": (write_ply(tmp_path / "odd.ply", names[:-9] + names[-8:], [r[:-9] + r[-8:] for r in rows]),
                       "spherical-harmonic degree"),
        "empty file": (tmp_path / "empty.ply", "not a PLY file"),
    }


def test_damaged_files_give_a_clear_error_and_add_nothing(orbitex, tmp_path):
    from orbitex.addon.ply_format import PlyError
    from orbitex.addon.scene_gaussians import import_gaussians

    cases = _bad_files(tmp_path)
    good = (tmp_path / "good.ply").read_bytes()
    header_end = good.index(b"end_header\n") + len(b"end_header\n")
    (tmp_path / "header_only.ply").write_bytes(good[:header_end])
    (tmp_path / "no_end.ply").write_bytes(good[:header_end - 11])
    (tmp_path / "photo.ply").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (tmp_path / "empty.ply").write_bytes(b"")
    before = new_datablocks()
    for label, (path, expected) in cases.items():
        with pytest.raises(PlyError) as err:
            import_gaussians(path, "Broken")
        message = str(err.value)
        assert message.startswith(path.name + ":"), (label, message)  # names the file
        assert expected in message, (label, message)
        assert new_datablocks() == before, label
    truncated = str(pytest.raises(PlyError, import_gaussians, cases["truncated"][0], "Broken").value)
    assert "declares 50 vertex records" in truncated


def test_import_works_while_another_object_is_in_edit_mode(orbitex, tmp_path):
    """Results arrive from a timer whatever the user is doing: an object in Edit Mode stays there."""
    from orbitex.addon.scene_gaussians import import_gaussians

    names = property_names(0)
    path = write_ply(tmp_path / "g.ply", names, random_rows(names, 10))
    bpy.ops.mesh.primitive_cube_add()
    editing = bpy.context.active_object
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        obj = import_gaussians(path, "While Editing")
        assert obj.type == "POINTCLOUD" and len(obj.data.points) == 10
        assert bpy.context.mode == "EDIT_MESH" and bpy.context.view_layer.objects.active == editing
        bpy.data.objects.remove(obj)
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        bpy.data.objects.remove(editing)
