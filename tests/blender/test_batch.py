"""orbitex.batch_collection with a real local backend: every mesh of a collection (children
included) gets a job; a mesh the backend refuses fails with its reason while the others are
textured; objects that are not meshes are skipped; the batch's overall progress climbs to 1."""
from __future__ import annotations

import socket

import bpy
import numpy as np
import pytest

from orbitex_testing import NEEDS_BACKEND
from texturing_testing import BAKE_PARAMS, TEXTURE_PARAMS, invoke, new_mesh, reference_png, state, \
    tick_until

pytestmark = NEEDS_BACKEND



def _collection(name: str) -> tuple[bpy.types.Collection, dict[str, bpy.types.Object]]:
    """Two good meshes (one in a child collection), a mesh with no faces, and an empty."""
    top = bpy.data.collections.new(name)
    bpy.context.scene.collection.children.link(top)
    child = bpy.data.collections.new(f"{name} child")
    top.children.link(child)
    objs = {"good": new_mesh(f"{name} good", "uv_sphere", uvs=True, old_material=f"{name} old"),
            "no uv": new_mesh(f"{name} no uv", "ico", uvs=False, location=(3, 0, 0))}
    mesh = bpy.data.meshes.new(f"{name} points")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [])
    objs["points"] = bpy.data.objects.new(f"{name} points", mesh)
    objs["empty"] = bpy.data.objects.new(f"{name} empty", None)
    for key, obj in objs.items():
        for c in list(obj.users_collection):
            c.objects.unlink(obj)
        (child if key == "no uv" else top).objects.link(obj)
    return top, objs


def test_execute_textures_the_good_meshes_and_reports_the_bad_one(session, tmp_path):
    from orbitex.operators.batch_collection import batches

    collection, objs = _collection("Batch Tex")
    reference = reference_png(tmp_path / "reference.png")
    before = {k: state(o) for k, o in objs.items() if o.type == "MESH"}
    result = bpy.ops.orbitex.batch_collection(collection=collection.name, mode="TEXTURE", image_path=str(reference),
                                              **TEXTURE_PARAMS)
    assert result == {"FINISHED"}
    batch = batches[-1]
    done, failed, skipped = batch.outcome()
    assert sorted(done) == ["Batch Tex good", "Batch Tex no uv"]
    assert [name for name, _ in failed] == ["Batch Tex points"]
    assert "failed" in failed[0][1] and "triang" in failed[0][1].lower(), failed  # the backend's own reason
    assert skipped == [("Batch Tex empty", "not a mesh (empty)")]
    assert batch.progress == 1.0 and not batch.active
    summary = batch.summary_text()
    assert summary.startswith("2 textured (Batch Tex good, Batch Tex no uv); 1 failed: Batch Tex points: failed: ")
    assert summary.endswith("; 1 skipped: Batch Tex empty (not a mesh (empty))")
    assert batch.node_lines() == [f"{socket.gethostname()}: 2 done, 1 failed, 0 running"]  # the Batch panel's per-node line
    assert state(objs["good"])["slots"] == ["Batch Tex old", "Batch Tex good Orbitex texture"]
    assert state(objs["no uv"])["uv_maps"] == ["Orbitex UV"]
    assert state(objs["points"]) == {**before["points"], "materials": state(objs["points"])["materials"],
                                     "images": state(objs["points"])["images"]}


def test_invoke_bakes_in_the_background_with_overall_progress(session):
    from orbitex.operators.batch_collection import ORBITEX_OT_batch_collection, batches

    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.render.resolution_percentage = 100
    data = bpy.data.cameras.new("Batch Cam")
    cam = bpy.data.objects.new("Batch Cam", data)
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (1.5, -8.0, 0.0), (np.pi / 2, 0.0, 0.0)  # looks along +Y at both meshes
    data.lens = 35.0
    image = bpy.data.images.new("Batch Cam image", 64, 64)
    image.pixels.foreach_set(np.tile([0.2, 0.6, 0.9, 1.0], 64 * 64).astype(np.float32))
    data.background_images.new().image = image
    collection, objs = _collection("Batch Bake")
    result, reports = invoke(ORBITEX_OT_batch_collection, collection=collection.name, mode="BAKE", **BAKE_PARAMS)
    assert result == {"FINISHED"}, reports
    batch = batches[-1]
    assert batch.collection == "Batch Bake" and len(batch.jobs) == 3 and batch.active
    progress = [batch.progress]
    tick_until(session, lambda: progress.append(batch.progress) or not batch.active)
    assert progress[0] < 1.0 and progress[-1] == 1.0
    assert all(b >= a - 1e-9 for a, b in zip(progress, progress[1:]))  # it only climbs
    done, failed, skipped = batch.outcome()
    assert sorted(done) == ["Batch Bake good", "Batch Bake no uv"], [(j.target, j.state, j.message) for j in batch.jobs]
    assert [n for n, _ in failed] == ["Batch Bake points"]
    assert state(objs["good"])["slots"][-1] == "Batch Bake good Orbitex bake"
    bpy.data.objects.remove(cam)


def test_a_collection_without_meshes_is_an_error(session):
    empty = bpy.data.collections.new("Batch Nothing")
    bpy.context.scene.collection.children.link(empty)
    with pytest.raises(RuntimeError, match="the collection 'Batch Nothing' holds no mesh"):
        bpy.ops.orbitex.batch_collection(collection="Batch Nothing")
    with pytest.raises(RuntimeError, match="no collection 'Nope'"):
        bpy.ops.orbitex.batch_collection(collection="Nope")


def test_cancel_batch_stops_the_unfinished_jobs(session, tmp_path):
    from orbitex.addon.client import BackendClient
    from orbitex.addon.jobs import Job
    from orbitex.operators.batch_collection import Batch, batches

    jobs = [Job("texture", {}, {}, f"Batch Cancel {i}", tmp_path / str(i)) for i in range(2)]
    jobs[0].state = "done"
    for job in jobs:
        session.board.add(job, BackendClient("http://127.0.0.1:9"), lambda j: None)
    batches.append(Batch("Batch Cancel", "texture", jobs))
    assert bpy.ops.orbitex.cancel_batch() == {"FINISHED"}
    assert [j.state for j in jobs] == ["done", "cancelled"]
    with pytest.raises(RuntimeError, match="poll"):  # nothing left to cancel: the button is greyed out
        bpy.ops.orbitex.cancel_batch()
