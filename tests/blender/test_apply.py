"""Applying a texture result (addon/scene_io.apply_texture_result, orbitex.apply_result) on
synthetic results, no backend: a new UV map carried by a GLB whose vertices are split (as xatlas
does), triangles shuffled and node transform flattened lands per face corner on the object's own
mesh; a texture on an existing UV map is checked against the map it claims; nothing is touched
when a check fails; the target is found by its id, never by name; one apply is one undo step."""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest

from orbitex_testing import enabled_addon
from texturing_testing import loop_uvs, new_mesh, save_png, state, texture_pixels, write_glb


@pytest.fixture(scope="module")
def addon():
    with enabled_addon() as module:
        yield module


@pytest.fixture()
def clean(addon):
    yield
    for obj in list(bpy.data.objects):
        if obj.name.startswith("Apply"):
            bpy.data.objects.remove(obj)
    from orbitex.addon import session

    session.board.clear()


def _texture(tmp_path: Path) -> Path:
    rgba = np.zeros((8, 8, 4), np.float32)
    rgba[..., 0], rgba[..., 3] = np.linspace(0, 1, 8)[None, :], 1.0
    return save_png(tmp_path / "texture.png", rgba)


def _chart_offsets(obj) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A distinct UV offset per polygon, as if every polygon were its own chart."""
    p = np.arange(len(obj.data.polygons))
    return np.stack([(p % 9) * 0.11, (p // 9 % 9) * 0.11], axis=1)


def _split_result(obj, exported: Path, out: Path, rng: np.random.Generator) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A result GLB the way a UV-making backend may return it: one vertex per triangle corner,
    triangles shuffled, corners rotated or reversed, node transform baked into the positions. Its UVs are
    (polygon offset + a function of the corner's position); returns the per-loop UVs expected
    on `obj` (Blender convention)."""
    from orbitex.addon.glb_read import read_glb

    src = read_glb(exported)
    mesh = obj.data
    mesh.calc_loop_triangles()
    polygon_of_triangle = np.array([t.polygon_index for t in mesh.loop_triangles])  # exporter keeps this order
    corners = src.corner_positions  # (T, 3, 3) world frame of the file
    offsets = _chart_offsets(obj)[polygon_of_triangle]  # (T, 2)
    local = (corners - corners.reshape(-1, 3).min(0)) / np.ptp(corners.reshape(-1, 3), axis=0).max()
    uv_blender = offsets[:, None, :] + 0.1 * local[..., :2]  # (T, 3, 2)
    perm = rng.permutation(len(corners))
    # each triangle's corners rotated, and some reversed (a writer may flip the winding)
    orders = [np.roll([0, 1, 2], -r)[::(-1 if f else 1)]
              for r, f in zip(rng.integers(0, 3, len(corners)), rng.integers(0, 2, len(corners)))]
    pos = np.stack([corners[t][orders[t]] for t in perm]).reshape(-1, 3)
    uvb = np.stack([uv_blender[t][orders[t]] for t in perm]).reshape(-1, 2)
    uv_gltf = np.stack([uvb[:, 0], 1.0 - uvb[:, 1]], axis=1)
    write_glb(out, pos, np.arange(len(pos)).reshape(-1, 3), {0: uv_gltf})
    # expected per loop: the polygon's offset + the function of its vertex position
    expected = np.zeros((len(mesh.loops), 2))
    co = np.array([v.co for v in mesh.vertices])
    to_file = src.node_matrix @ np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
    world = co @ to_file[:3, :3].T + to_file[:3, 3]
    lo, extent = corners.reshape(-1, 3).min(0), np.ptp(corners.reshape(-1, 3), axis=0).max()
    for poly in mesh.polygons:
        for li in poly.loop_indices:
            p = (world[mesh.loops[li].vertex_index] - lo) / extent
            expected[li] = _chart_offsets(obj)[poly.index] + 0.1 * p[:2]
    return expected


def test_write_png_round_trips_through_blender(addon, tmp_path):
    rgba = np.random.default_rng(1).random((5, 7, 4)).astype(np.float32)
    path = save_png(tmp_path / "x.png", rgba)
    image = bpy.data.images.load(str(path))
    try:
        assert tuple(image.size) == (7, 5)
        assert np.allclose(texture_pixels(image)[::-1], np.round(rgba * 255) / 255, atol=1e-6)
    finally:
        bpy.data.images.remove(image)


def test_a_new_uv_map_from_split_shuffled_vertices_lands_per_face_corner(clean, tmp_path):
    from orbitex.addon import scene_io

    obj = new_mesh("Apply New UV", "uv_sphere", uvs=False, old_material="Apply Old")
    obj.location, obj.rotation_euler, obj.scale = (1.0, 2.0, -0.5), (0.3, 0.2, 1.1), (1.0, 2.0, 0.5)
    bpy.context.view_layer.update()
    exported = scene_io.export_mesh_glb(obj, tmp_path / "mesh.glb", apply_modifiers=False, texcoords=False)
    expected = _split_result(obj, exported, tmp_path / "result.glb", np.random.default_rng(0))
    from orbitex.addon.glb_read import read_glb

    assert len(read_glb(tmp_path / "result.glb").positions) != len(obj.data.vertices)  # vertex counts differ
    before = state(obj)
    applied = scene_io.apply_texture_result(obj, tmp_path / "result.glb", _texture(tmp_path), exported, None,
                                            "Apply New UV Orbitex bake")
    after = state(obj)
    assert applied.uv_map == "Orbitex UV" and after["uv_maps"] == ["Orbitex UV"]
    assert np.abs(loop_uvs(obj, "Orbitex UV") - expected).max() < 1e-5
    assert applied.note == ""  # every polygon was one chart: no corner with two UVs
    # the mesh and the object are what they were; the old material is still there, in its slot
    for key in ("vertices", "polygons", "matrix"):
        assert after[key] == before[key]
    assert after["slots"] == ["Apply Old", applied.material.name] and after["active_slot"] == 1
    assert set(after["material_indices"]) == {1}
    assert "Apply Old" in after["materials"]
    # the material reads the image through a UV Map node naming the new map
    nodes = applied.material.node_tree.nodes
    uv_node = next(n for n in nodes if n.type == "UVMAP")
    tex = next(n for n in nodes if n.type == "TEX_IMAGE")
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    assert uv_node.uv_map == "Orbitex UV" and tex.image == applied.image
    assert tex.inputs["Vector"].links[0].from_node == uv_node
    assert bsdf.inputs["Base Color"].links[0].from_node == tex
    assert applied.image.packed_file is not None


def test_a_result_that_does_not_fit_the_mesh_changes_nothing(clean, tmp_path):
    from orbitex.addon import scene_io

    obj = new_mesh("Apply Edited", "ico", uvs=False, old_material="Apply Old")
    exported = scene_io.export_mesh_glb(obj, tmp_path / "mesh.glb", apply_modifiers=False, texcoords=False)
    _split_result(obj, exported, tmp_path / "result.glb", np.random.default_rng(1))
    obj.data.vertices[0].co.x += 0.3  # the user edited the mesh while the job ran
    before = state(obj)
    with pytest.raises(ValueError, match=r"triangles of 'Apply Edited' have no counterpart in the result"):
        scene_io.apply_texture_result(obj, tmp_path / "result.glb", _texture(tmp_path), exported, None, "x")
    assert state(obj) == before


def test_a_texture_on_an_existing_uv_map_is_checked_against_that_map(clean, tmp_path):
    from orbitex.addon import scene_io
    from orbitex.addon.glb_read import read_glb

    obj = new_mesh("Apply Two Maps", "uv_sphere", uvs=True, old_material="Apply Old")
    second = obj.data.uv_layers.new(name="Second")
    uvs = loop_uvs(obj, "UVMap")
    second.data.foreach_set("uv", (uvs * 0.5 + 0.25).ravel())
    exported = scene_io.export_mesh_glb(obj, tmp_path / "mesh.glb")
    src = read_glb(exported)
    assert sorted(src.uv_sets) == [0, 1]
    # the backend's GLB: the same mesh, its texture on TEXCOORD_1 ("Second")
    write_glb(tmp_path / "result.glb", src.positions, src.triangles, src.uv_sets, base_color_uv=1)
    before = state(obj)
    with pytest.raises(ValueError, match=r"baked onto TEXCOORD_1, not TEXCOORD_0 \(UV map 'UVMap'\)"):
        scene_io.apply_texture_result(obj, tmp_path / "result.glb", _texture(tmp_path), exported, "UVMap", "x")
    assert state(obj) == before
    applied = scene_io.apply_texture_result(obj, tmp_path / "result.glb", _texture(tmp_path), exported, "Second",
                                            "Apply Two Maps Orbitex texture")
    assert applied.uv_map == "Second"
    assert next(n for n in applied.material.node_tree.nodes if n.type == "UVMAP").uv_map == "Second"
    assert state(obj)["uv_maps"] == ["UVMap", "Second"]  # no UV map added or changed
    assert np.array_equal(loop_uvs(obj, "UVMap"), uvs)


def test_targets_are_found_by_id_and_a_rename_is_not_followed_silently(clean):
    from orbitex.addon import scene_io

    obj = new_mesh("Apply Target", "ico")
    ref = scene_io.target_ref(obj)
    assert scene_io.find_target(ref) == obj
    obj.name = "Apply Renamed"
    impostor = new_mesh("Apply Target", "ico")  # another object takes the old name
    assert impostor.name == "Apply Target"
    with pytest.raises(scene_io.TargetMissing, match="renamed to 'Apply Renamed'.*press Apply"):
        scene_io.find_target(ref)
    assert scene_io.find_target(ref, allow_renamed=True) == obj  # the user's explicit Apply follows it
    bpy.data.objects.remove(obj)
    with pytest.raises(scene_io.TargetMissing, match="'Apply Target' was deleted"):
        scene_io.find_target(ref, allow_renamed=True)


def _finished_job(obj, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A done texture job on the session board whose downloaded result fits `obj` (no backend)."""
    from orbitex.addon import scene_io, session
    from orbitex.addon.client import BackendClient
    from orbitex.addon.jobs import Job
    from orbitex.operators import texture_jobs

    exported = scene_io.export_mesh_glb(obj, tmp_path / "mesh.glb", apply_modifiers=False, texcoords=False)
    _split_result(obj, exported, tmp_path / "result.glb", np.random.default_rng(2))
    job = Job("bake", {}, {}, obj.name, tmp_path, fetch=("glb", "texture"), state="done",
              downloaded={"glb": tmp_path / "result.glb", "texture": _texture(tmp_path)},
              meta={"target": scene_io.target_ref(obj), "uv_map": None, "exported": str(exported)})
    return session.board.add(job, BackendClient("http://127.0.0.1:9"), texture_jobs.apply)


def test_apply_result_is_one_undo_step(clean, tmp_path):
    obj = new_mesh("Apply Undo", "ico", uvs=False, old_material="Apply Undo Old")
    job = _finished_job(obj, tmp_path)
    bpy.ops.ed.undo_push(message="before the unrelated edit")
    obj.data.materials.append(bpy.data.materials.new("Apply Unrelated"))  # the user's own last step
    bpy.ops.ed.undo_push(message="unrelated edit")
    before = state(obj)
    # As a button press does: undo=True makes the operator system push the operator's undo step
    # (Python calls skip it by default); nothing inside the apply may push another one.
    assert bpy.ops.orbitex.apply_result("EXEC_DEFAULT", True, job_id=job.id) == {"FINISHED"}
    applied = state(bpy.data.objects["Apply Undo"])
    assert applied["slots"][-1] == "Apply Undo Orbitex bake" and applied["uv_maps"] == ["Orbitex UV"]
    bpy.ops.ed.undo()  # one step back: the apply is gone, the user's unrelated edit is not
    assert state(bpy.data.objects["Apply Undo"]) == before
    assert "Apply Undo Orbitex bake" not in bpy.data.materials
    bpy.ops.ed.undo()
    assert state(bpy.data.objects["Apply Undo"])["slots"] == ["Apply Undo Old"]
    bpy.ops.ed.redo()
    bpy.ops.ed.redo()
    assert state(bpy.data.objects["Apply Undo"]) == applied


def test_apply_result_follows_a_renamed_object_and_reports_a_deleted_one(clean, tmp_path):
    obj = new_mesh("Apply Follow", "ico", uvs=False)
    job = _finished_job(obj, tmp_path)
    obj.name = "Apply Followed"
    assert bpy.ops.orbitex.apply_result(job_id=job.id) == {"FINISHED"}
    assert obj.material_slots[-1].material.name == "Apply Followed Orbitex bake"
    assert job.state == "done" and job.meta["applied"]["object"] == "Apply Followed"
    bpy.data.objects.remove(obj)
    with pytest.raises(RuntimeError, match="'Apply Follow' was deleted"):
        bpy.ops.orbitex.apply_result(job_id=job.id)
    with pytest.raises(RuntimeError, match="no Orbitex job 'nope'"):
        bpy.ops.orbitex.apply_result(job_id="nope")


def test_open_result_folder_opens_the_job_results(clean, tmp_path, monkeypatch):
    from orbitex.operators import results

    obj = new_mesh("Apply Folder", "ico", uvs=False)
    job = _finished_job(obj, tmp_path / "work")
    (tmp_path / "work" / "results").mkdir()
    opened = []
    monkeypatch.setattr(results, "open_folder", opened.append)
    assert bpy.ops.orbitex.open_result_folder(job_id=job.id) == {"FINISHED"}
    assert opened == [tmp_path / "work" / "results"]


def test_an_object_in_edit_mode_is_left_alone(clean, tmp_path):
    from orbitex.addon import scene_io

    obj = new_mesh("Apply Editing", "ico", uvs=False)
    exported = scene_io.export_mesh_glb(obj, tmp_path / "mesh.glb", apply_modifiers=False, texcoords=False)
    _split_result(obj, exported, tmp_path / "result.glb", np.random.default_rng(3))
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        with pytest.raises(ValueError, match="'Apply Editing' is in Edit Mode; leave Edit Mode and press Apply"):
            scene_io.apply_texture_result(obj, tmp_path / "result.glb", _texture(tmp_path), exported, None, "x")
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
    assert state(obj)["uv_maps"] == [] and state(obj)["slots"] == []
