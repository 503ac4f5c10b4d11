"""orbitex.texture_selected end to end with a real local backend started by the add-on: the result
lands on the original object (its UV map, or a new one for a mesh without UVs), the old material
stays in the file, one undo step takes the applied result away, a cancelled job leaves the scene
as it was, and an unreachable backend is an operator error with no change."""
from __future__ import annotations

import socket

import bpy
import numpy as np
import pytest

from orbitex_testing import NEEDS_BACKEND, prefs
from texturing_testing import (TEXTURE_PARAMS, face_colours, new_mesh, object_state, reference_png,
                               select_only, state, tick_until, invoke)

pytestmark = NEEDS_BACKEND



@pytest.fixture(scope="module")
def ORBITEX_OT_texture_selected(session):
    from orbitex.operators.texture_selected import ORBITEX_OT_texture_selected

    return ORBITEX_OT_texture_selected


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_png(tmp_path_factory.mktemp("ref") / "reference.png")


def _material_uv_map(material) -> str:  # type: ignore[no-untyped-def]
    return next(n for n in material.node_tree.nodes if n.type == "UVMAP").uv_map


def _material_image(material):  # type: ignore[no-untyped-def]
    return next(n for n in material.node_tree.nodes if n.type == "TEX_IMAGE").image


def _front_colours(obj, uv_map: str, image) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Mean texture colour of the faces facing the reference camera (-Y, Blender's front view)
    on the object's left (-X) and right (+X) halves."""
    colours = face_colours(obj, uv_map, image)
    normals = np.array([p.normal for p in obj.data.polygons])
    centres = np.array([p.center for p in obj.data.polygons])
    front = normals[:, 1] < -0.5
    return colours[front & (centres[:, 0] < -0.2)].mean(0), colours[front & (centres[:, 0] > 0.2)].mean(0)


def test_execute_textures_the_object_on_its_own_uv_map_and_keeps_the_old_material(session, reference):
    obj = new_mesh("Tex Kept", "uv_sphere", uvs=True, old_material="Tex Old Material")
    bystander = new_mesh("Tex Bystander", "ico", old_material="Tex Bystander Material", location=(4, 0, 0))
    select_only(obj)
    before, bystander_before = state(obj), object_state(bystander)
    assert bpy.ops.orbitex.texture_selected(image_path=str(reference), **TEXTURE_PARAMS) == {"FINISHED"}
    job = session.board.jobs()[-1]
    assert (job.type, job.state, job.target) == ("texture", "done", "Tex Kept"), job.message
    after = state(obj)
    # the same object, mesh and transform; its own UV map; a new material in a new, active slot
    for key in ("vertices", "polygons", "matrix", "uv_maps"):
        assert after[key] == before[key]
    assert after["slots"] == ["Tex Old Material", "Tex Kept Orbitex texture"] and after["active_slot"] == 1
    assert set(after["material_indices"]) == {1}
    assert "Tex Old Material" in after["materials"]
    material = obj.material_slots[1].material
    assert _material_uv_map(material) == "UVMap"
    image = _material_image(material)
    assert image.packed_file is not None and tuple(image.size) == (TEXTURE_PARAMS["texture_size"],) * 2
    # the reference (red left, blue right) really lands on the front of the object, the right way round
    left, right = _front_colours(obj, "UVMap", image)
    assert left[0] > left[2] + 0.2 and right[2] > right[0] + 0.2, (left, right)
    assert object_state(bystander) == bystander_before
    record = session.local_backend().client().job(job.backend_id)
    assert record["params"]["bake"]["uv_map"] == "TEXCOORD_0" and record["params"]["generator"] == "projection"
    assert record["params"]["turntable"] is False  # never downloaded here: not rendered
    assert not bpy.app.timers.is_registered(session.tick)  # execute() needs no timer


def test_invoke_with_an_image_datablock_adds_a_new_uv_map_and_undo_takes_the_result_away(
        session, reference, ORBITEX_OT_texture_selected):
    obj = new_mesh("Tex No UV", "ico", uvs=False, old_material="Tex No UV Old")
    image = bpy.data.images.load(str(reference))
    image.name = "Tex Reference"
    select_only(obj)
    before = state(obj)
    # As from the sidebar button: invoke() submits and returns at once.
    result, reports = invoke(ORBITEX_OT_texture_selected, image_name="Tex Reference", uv_mode="NEW", **TEXTURE_PARAMS)
    assert result == {"FINISHED"} and reports == [("INFO", "Orbitex: 1 texture job(s) submitted")]
    job = session.board.jobs()[-1]
    assert job.target == "Tex No UV" and job.state in ("queued", "running")
    assert bpy.app.timers.is_registered(session.tick)
    assert state(obj) == before  # nothing applied yet
    bpy.ops.ed.undo_push(message="the user's last step before the result")
    tick_until(session, lambda: not job.active)
    assert job.state == "done", job.message
    after = state(bpy.data.objects["Tex No UV"])
    assert after["uv_maps"] == ["Orbitex UV"] and after["vertices"] == before["vertices"]
    assert after["slots"] == ["Tex No UV Old", "Tex No UV Orbitex texture"]
    assert _material_uv_map(bpy.data.materials["Tex No UV Orbitex texture"]) == "Orbitex UV"
    uvs = np.empty(len(obj.data.loops) * 2)
    obj.data.uv_layers["Orbitex UV"].data.foreach_get("uv", uvs)
    assert uvs.min() >= 0 and uvs.max() <= 1 and np.ptp(uvs) > 0.5  # a real atlas, not zeros
    # the timer's apply is one undo step
    bpy.ops.ed.undo()
    assert state(bpy.data.objects["Tex No UV"]) == before
    assert "Tex No UV Orbitex texture" not in bpy.data.materials


def test_cancel_mid_job_leaves_the_scene_unchanged(session, reference, ORBITEX_OT_texture_selected):
    obj = new_mesh("Tex Cancel", "uv_sphere", old_material="Tex Cancel Old")
    select_only(obj)
    before = state(obj)
    result, _ = invoke(ORBITEX_OT_texture_selected, image_path=str(reference), frames=61, size=256,
                       texture_size=1024)
    assert result == {"FINISHED"}
    job = session.board.jobs()[-1]
    tick_until(session, lambda: job.state == "running" and job.progress > 0 or not job.active)
    assert job.state == "running", (job.state, job.message)
    assert bpy.ops.orbitex.cancel_job(job_id=job.id) == {"FINISHED"}
    tick_until(session, lambda: not job.active, timeout=60)
    assert job.state == "cancelled", (job.state, job.message)
    assert state(obj) == before
    assert session.local_backend().client().job(job.backend_id)["state"] == "cancelled"


def test_bad_inputs_and_an_unreachable_backend_are_errors_with_no_change(session, reference, tmp_path):
    obj = new_mesh("Tex Down", "ico", old_material="Tex Down Old")
    select_only(obj)
    before, jobs_before = state(obj), list(session.board.jobs())
    with pytest.raises(RuntimeError, match="reference image .*missing.png' does not exist"):
        bpy.ops.orbitex.texture_selected(image_path=str(tmp_path / "missing.png"))
    with pytest.raises(RuntimeError, match="no reference image"):
        bpy.ops.orbitex.texture_selected()
    with pytest.raises(RuntimeError, match=r"'Tex Down' has no UV map 'Nope' \(it has 'UVMap'\)"):
        bpy.ops.orbitex.texture_selected(image_path=str(reference), uv_map="Nope")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = prefs()
    p.backend_mode, p.remote_url, p.remote_token = "REMOTE", f"http://127.0.0.1:{port}", "token"
    try:
        with pytest.raises(RuntimeError, match="Orbitex backend unavailable: cannot reach the Orbitex backend"):
            bpy.ops.orbitex.texture_selected(image_path=str(reference))
    finally:
        p.backend_mode = "LOCAL"
    assert state(obj) == before and session.board.jobs() == jobs_before
