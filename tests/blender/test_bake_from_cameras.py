"""orbitex.bake_from_cameras with a real local backend: four scene cameras, each showing a
background image of one colour (the front one split red | green), bake onto a mesh with UVs and
one without; each side of each object takes the colour of the camera facing it, on the object's
own UV map or on the new one (xatlas' split vertices transferred per face corner). A result
whose object was renamed meanwhile is kept, not applied to the object that took the old name.
The view set built from cameras + images by name, or from a view-set folder in Blender's world
frame, carries the cameras as converted by addon/cameras.py."""
from __future__ import annotations

import json
import math
import zipfile

import bpy
import numpy as np
import pytest
from mathutils import Vector

from orbitex_testing import NEEDS_BACKEND
from texturing_testing import (BAKE_PARAMS, face_colours, invoke, new_mesh, object_state, save_png,
                               select_only, state, tick_until)

pytestmark = NEEDS_BACKEND

SIZE = 64
# camera position -> colour of its image (the front camera, at -Y, sees red on its left, green on its right)
RING = {(0, -4, 0): "split", (4, 0, 0): (1.0, 1.0, 0.0), (0, 4, 0): (0.0, 0.0, 1.0), (-4, 0, 0): (1.0, 0.0, 1.0)}



def _image(name: str, colour, size: int = SIZE):  # type: ignore[no-untyped-def]
    rgba = np.ones((size, size, 4), np.float32)
    if colour == "split":
        rgba[:, : size // 2, :3] = (1.0, 0.0, 0.0)
        rgba[:, size // 2:, :3] = (0.0, 1.0, 0.0)
    else:
        rgba[..., :3] = colour
    image = bpy.data.images.new(name, size, size)
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1]).ravel())
    return image


def _look_at(obj, target=(0.0, 0.0, 0.0)) -> None:  # type: ignore[no-untyped-def]
    direction = Vector(target) - obj.location
    obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()


@pytest.fixture(scope="module")
def ring(session):
    """Four cameras around the origin, each with a background image; 64x64 renders."""
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = SIZE
    scene.render.resolution_percentage, scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = 100, 1, 1
    made = []
    for i, (location, colour) in enumerate(RING.items()):
        data = bpy.data.cameras.new(f"Ring {i}")
        data.lens, data.sensor_width, data.sensor_fit = 50.0, 36.0, "AUTO"
        obj = bpy.data.objects.new(f"Ring {i}", data)
        scene.collection.objects.link(obj)
        obj.location = location
        _look_at(obj)
        bg = data.background_images.new()
        bg.image = _image(f"Ring {i} image", colour)
        made.append(obj)
    bpy.context.view_layer.update()
    yield made
    for obj in made:
        data = obj.data
        bpy.data.objects.remove(obj)
        bpy.data.cameras.remove(data)


def _side_colours(obj, uv_map: str) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    material = obj.material_slots[obj.active_material_index].material
    image = next(n for n in material.node_tree.nodes if n.type == "TEX_IMAGE").image
    colours = face_colours(obj, uv_map, image)
    normals = np.array([p.normal for p in obj.data.polygons])
    centres = np.array([p.center for p in obj.data.polygons])
    front = normals[:, 1] < -0.8
    return {"front left": colours[front & (centres[:, 0] < -0.15)].mean(0),
            "front right": colours[front & (centres[:, 0] > 0.15)].mean(0),
            "+x": colours[normals[:, 0] > 0.8].mean(0), "back": colours[normals[:, 1] > 0.8].mean(0),
            "-x": colours[normals[:, 0] < -0.8].mean(0)}


def _assert_sides(obj, uv_map: str) -> None:  # type: ignore[no-untyped-def]
    sides = _side_colours(obj, uv_map)
    expected = {"front left": (1, 0, 0), "front right": (0, 1, 0), "+x": (1, 1, 0), "back": (0, 0, 1),
                "-x": (1, 0, 1)}
    for side, colour in expected.items():
        assert np.abs(sides[side] - np.array(colour)).max() < 0.25, (obj.name, side, sides[side])


def test_execute_bakes_camera_images_onto_the_objects_own_and_new_uv_maps(session, ring):
    with_uvs = new_mesh("Bake UV", "uv_sphere", uvs=True, old_material="Bake Old")
    without = new_mesh("Bake No UV", "ico", uvs=False, old_material="Bake Old")
    select_only(with_uvs, without)
    before = {o.name: state(o) for o in (with_uvs, without)}
    assert bpy.ops.orbitex.bake_from_cameras(**BAKE_PARAMS) == {"FINISHED"}
    jobs = {j.target: j for j in session.board.jobs()[-2:]}
    assert sorted(jobs) == ["Bake No UV", "Bake UV"] and {j.state for j in jobs.values()} == {"done"}, \
        [(j.target, j.state, j.message) for j in jobs.values()]
    assert all(j.params["align"] is True for j in jobs.values())  # Align Views is on by default
    for obj in (with_uvs, without):
        after = state(obj)
        for key in ("vertices", "polygons", "matrix"):
            assert after[key] == before[obj.name][key]
        assert after["slots"] == ["Bake Old", f"{obj.name} Orbitex bake"] and after["active_slot"] == 1
    assert state(with_uvs)["uv_maps"] == ["UVMap"]
    assert state(without)["uv_maps"] == ["Orbitex UV"]
    from orbitex.addon.glb_read import read_glb

    assert len(read_glb(jobs["Bake No UV"].downloaded["glb"]).positions) > len(without.data.vertices)
    _assert_sides(with_uvs, "UVMap")
    _assert_sides(without, "Orbitex UV")
    # the uploaded view set: one frame per camera, with its image
    with zipfile.ZipFile(jobs["Bake UV"].inputs["views"]) as zf:
        meta = json.loads(zf.read("transforms.json"))
        assert len(meta["frames"]) == 4 and all(f["file_path"] in zf.namelist() for f in meta["frames"])


def test_align_views_off_reaches_the_backend(session, ring):
    obj = new_mesh("Bake Unaligned", "ico", uvs=True)
    select_only(obj)
    assert bpy.ops.orbitex.bake_from_cameras(align=False, **BAKE_PARAMS) == {"FINISHED"}
    job = session.board.jobs()[-1]
    assert job.target == "Bake Unaligned" and job.state == "done", (job.state, job.message)
    assert job.params["align"] is False
    assert session.connect().job(job.backend_id)["params"]["align"] is False  # as the service stored it
    assert job.params["views_frame"] == "gltf"  # cameras made here are in the uploaded GLB's frame


def test_a_result_whose_object_was_renamed_is_kept_and_never_lands_on_another_object(session, ring):
    from orbitex.operators.bake_from_cameras import ORBITEX_OT_bake_from_cameras

    obj = new_mesh("Bake Target", "ico", uvs=True)
    select_only(obj)
    result, _ = invoke(ORBITEX_OT_bake_from_cameras, **BAKE_PARAMS)
    assert result == {"FINISHED"}
    job = session.board.jobs()[-1]
    obj.name = "Bake Target Renamed"
    impostor = new_mesh("Bake Target", "ico", uvs=True, location=(5, 0, 0))
    renamed_before, impostor_before = object_state(obj), object_state(impostor)
    tick_until(session, lambda: not job.active)
    assert job.state == "failed" and "renamed to 'Bake Target Renamed'" in job.message, job.message
    assert "the result is kept" in job.message
    assert object_state(obj) == renamed_before and object_state(impostor) == impostor_before
    # the user's explicit Apply puts it on the renamed object (found by its id)
    assert bpy.ops.orbitex.apply_result(job_id=job.id) == {"FINISHED"}
    assert obj.material_slots[-1].material.name == "Bake Target Renamed Orbitex bake"
    assert object_state(impostor) == impostor_before


def _zipped_transforms(path) -> dict:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("transforms.json"))


def test_views_from_images_named_like_cameras_and_from_a_blender_frame_view_set(session, ring, tmp_path):
    from orbitex.addon import cameras
    from orbitex.operators.bake_from_cameras import views_archive

    folder = tmp_path / "photos"
    folder.mkdir()
    for obj in ring[:3]:  # the last camera has no image: it is left out
        save_png(folder / f"{obj.name}.png", np.full((32, 32, 4), 0.5, np.float32))  # half the render size
    meta = _zipped_transforms(views_archive(bpy.context, "IMAGE_FOLDER", "ALL", str(folder), "", "BLENDER",
                                            tmp_path / "a"))
    assert len(meta["frames"]) == 3
    for frame, obj in zip(meta["frames"], ring[:3]):
        view = cameras.view_camera(obj, bpy.context.scene)
        assert frame["transform_matrix"] == [list(r) for r in view.c2w]
        assert (frame["w"], frame["h"]) == (32, 32)
        assert frame["fl_x"] == pytest.approx(view.fl_x / 2) and frame["cx"] == pytest.approx(16)
    # a view-set folder written in Blender's world frame (as Blender add-ons write them)
    views = tmp_path / "blender_views"
    (views / "images").mkdir(parents=True)
    frames = []
    for obj in ring:
        save_png(views / "images" / f"{obj.name}.png", np.full((SIZE, SIZE, 4), 0.5, np.float32))
        world = cameras.rigid_c2w(obj.matrix_world)
        frames.append({"file_path": f"images/{obj.name}.png", "transform_matrix": [list(r) for r in world]})
    (views / "transforms.json").write_text(json.dumps({"camera_angle_x": 2 * math.atan(18 / 50), "frames": frames}))
    moved = _zipped_transforms(views_archive(bpy.context, "VIEW_SET", "ALL", "", str(views), "BLENDER",
                                             tmp_path / "b"))
    for frame, obj in zip(moved["frames"], ring):
        got = np.array(frame["transform_matrix"])
        assert np.allclose(got, np.array(cameras.view_camera(obj, bpy.context.scene).c2w), atol=1e-6)
    assert json.loads((views / "transforms.json").read_text())["frames"] == frames  # the user's file is untouched
    kept = _zipped_transforms(views_archive(bpy.context, "VIEW_SET", "ALL", "", str(views), "GLTF", tmp_path / "c"))
    assert kept["frames"] == frames
    # AUTO uploads the set as it is: the backend finds its frame (views_frame "auto")
    auto = _zipped_transforms(views_archive(bpy.context, "VIEW_SET", "ALL", "", str(views), "AUTO", tmp_path / "d"))
    assert auto["frames"] == frames


def test_camera_problems_are_named_before_anything_is_sent(session, ring, tmp_path):
    obj = new_mesh("Bake Nothing", "ico")
    select_only(obj)
    before, jobs_before = state(obj), list(session.board.jobs())
    with pytest.raises(RuntimeError, match=r"none of the cameras \(.*Ring 0, Ring 1, Ring 2, Ring 3\) has an image "
                                           r"named after it"):
        bpy.ops.orbitex.bake_from_cameras(source="IMAGE_FOLDER", image_folder=str(tmp_path))
    ring[1].data.background_images[0].rotation = 0.3
    try:
        with pytest.raises(RuntimeError, match="camera 'Ring 1': its background image 'Ring 1 image' is offset, "
                                               "rotated, scaled or flipped"):
            bpy.ops.orbitex.bake_from_cameras()
    finally:
        ring[1].data.background_images[0].rotation = 0.0
    small = _image("Ring small", (0.5, 0.5, 0.5), size=32)
    original = ring[2].data.background_images[0].image
    ring[2].data.background_images[0].image = small
    try:
        with pytest.raises(RuntimeError, match=r"the images differ in size \(Ring 0 64x64, Ring 1 64x64, Ring 2 32x32"):
            bpy.ops.orbitex.bake_from_cameras()
    finally:
        ring[2].data.background_images[0].image = original
        bpy.data.images.remove(small)
    with pytest.raises(RuntimeError, match="view-set folder .* does not exist"):
        bpy.ops.orbitex.bake_from_cameras(source="VIEW_SET", views_folder=str(tmp_path / "nowhere"))
    assert state(obj) == before and session.board.jobs() == jobs_before
