"""orbitex.render_orbit_preview end to end: the add-on starts a real local backend, the operator
exports the active mesh, the render-orbit pipeline runs, and the contact sheet comes back as a
packed image named after the object. Under bpy (background mode) neither invoke() nor timers
run, so the UI path is driven by calling invoke()'s body, render_orbit_preview.start(), and then
the timer body, session.tick(), by hand."""
from __future__ import annotations

import time

import bpy
import pytest

from orbitex_testing import NEEDS_BACKEND, new_mesh_object

pytestmark = NEEDS_BACKEND



def _image_names() -> set[str]:
    return {image.name for image in bpy.data.images}


def _tick_until(session, done, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, [(j.state, j.stage, j.message) for j in session.board.jobs()]
        session.tick()
        time.sleep(0.1)


def _contact_sheet_checks(image) -> None:
    assert image.packed_file is not None
    width, height = image.size
    assert width >= 64 and height >= 64
    pixels = list(image.pixels)
    # A real render of a mesh: not one flat colour.
    assert max(pixels) - min(pixels) > 0.2


def test_execute_blocks_until_the_contact_sheet_is_in_the_file(session):
    obj = new_mesh_object("Suzanne Exec")
    before = _image_names()
    assert bpy.ops.orbitex.render_orbit_preview(frames=4, size=64) == {"FINISHED"}
    added = _image_names() - before
    assert added == {"Suzanne Exec orbit preview"}
    _contact_sheet_checks(bpy.data.images["Suzanne Exec orbit preview"])
    job = session.board.jobs()[-1]
    assert (job.state, job.target, job.type) == ("done", obj.name, "render-orbit")
    record = session.local_backend().client().job(job.backend_id)
    assert record["state"] == "done" and record["params"]["frames"] == 4 and record["params"]["size"] == 64
    assert not bpy.app.timers.is_registered(session.tick)  # execute() needs no timer


def test_invoke_returns_at_once_and_the_timer_step_applies_the_result(session):
    from orbitex.operators import render_orbit_preview

    obj = new_mesh_object("Suzanne Invoke")
    before = _image_names()
    job = render_orbit_preview.start(obj, frames=4, size=64)
    assert session.board.jobs()[-1] is job
    assert job.state in ("queued", "running") and job.backend_id
    assert bpy.app.timers.is_registered(session.tick)
    assert _image_names() == before  # nothing applied yet
    seen = set()
    _tick_until(session, lambda: seen.add(job.state) or not job.active)
    assert job.state == "done", job.message
    assert {"downloading", "applying", "done"} <= seen  # one transition per timer step
    assert _image_names() - before == {"Suzanne Invoke orbit preview"}
    _contact_sheet_checks(bpy.data.images["Suzanne Invoke orbit preview"])
    assert session.tick() is None  # nothing active: the timer stops itself


def test_cancel_mid_job_leaves_the_scene_unchanged(session):
    from orbitex.operators import render_orbit_preview

    obj = new_mesh_object("Suzanne Cancel")
    before = _image_names()
    job = render_orbit_preview.start(obj, frames=121, size=1024)
    _tick_until(session, lambda: job.state == "running" and job.progress > 0 or not job.active)
    assert job.state == "running", (job.state, job.message)
    asked = time.monotonic()
    assert bpy.ops.orbitex.cancel_job(job_id=job.id) == {"FINISHED"}
    _tick_until(session, lambda: not job.active, timeout=60)
    took = time.monotonic() - asked
    assert job.state == "cancelled", (job.state, job.message)
    assert took < 15, f"cancel took {took:.1f} s"
    assert _image_names() == before
    assert session.local_backend().client().job(job.backend_id)["state"] == "cancelled"


def test_a_mesh_the_backend_rejects_gives_a_readable_error_and_no_change(session):
    # Vertices only, no faces: the exporter writes points, and the backend refuses the mesh.
    mesh = bpy.data.meshes.new("Points")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [])
    obj = bpy.data.objects.new("Points Only", mesh)
    bpy.context.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    before = _image_names()
    with pytest.raises(RuntimeError) as err:
        bpy.ops.orbitex.render_orbit_preview(frames=2, size=32)
    message = str(err.value)
    assert "render-orbit for 'Points Only' failed" in message
    assert len(message) > len("Error: Orbitex render-orbit for 'Points Only' failed: ") + 10
    assert "Traceback" not in message
    assert _image_names() == before
