"""orbitex.reconstruct_gaussians end to end against a real local backend: a textured sphere goes up
with its material and texture, the reconstruct pipeline fits Gaussians (tiny views / size /
iterations), and a point-cloud object comes back at the sphere, its Gaussians on the sphere's
surface and coloured like its texture. The UI path (submit, then timer steps) and an image source
whose video model is not installed are covered too."""
from __future__ import annotations

import json
import time

import bpy
import numpy as np
import pytest
from mathutils import Vector

from orbitex_testing import NEEDS_BACKEND

pytestmark = NEEDS_BACKEND

TINY = dict(view_count=4, size=32, iterations=8, gaussians=300, sh_degree=1, rounds=0)



def textured_sphere(name: str) -> bpy.types.Object:
    """A UV sphere (radius 1) moved, turned and scaled, red above its equator and blue below
    (an image texture on its UVs), active and selected."""
    bpy.ops.mesh.primitive_uv_sphere_add(segments=24, ring_count=12, radius=1.0, location=(2.0, -1.0, 0.5),
                                         rotation=(0.0, 0.0, 0.6))
    obj = bpy.context.active_object
    obj.name = name
    obj.scale = (0.5, 0.5, 0.5)
    image = bpy.data.images.new(f"{name} texture", 32, 32)
    pixels = np.zeros((32, 32, 4), np.float32)
    pixels[..., 3] = 1.0
    pixels[16:, :, 0] = 0.9  # image rows go bottom to top: v > 0.5 (the upper half) is red
    pixels[:16, :, 2] = 0.9
    image.pixels[:] = pixels.ravel()
    image.pack()
    material = bpy.data.materials.new(f"{name} material")
    material.use_nodes = True
    tex = material.node_tree.nodes.new("ShaderNodeTexImage")
    tex.image = image
    bsdf = material.node_tree.nodes["Principled BSDF"]
    material.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    obj.data.materials.append(material)
    bpy.context.view_layer.update()  # matrix_world follows the new scale
    return obj


def _object_names() -> set[str]:
    return {o.name for o in bpy.data.objects}


def _attribute(obj, name: str) -> np.ndarray:
    attribute = obj.data.attributes[name]
    size = 3 if attribute.data_type == "FLOAT_VECTOR" else 1
    out = np.zeros(len(attribute.data) * size, np.float32)
    attribute.data.foreach_get("vector" if size == 3 else "value", out)
    return out.reshape(-1, 3) if size == 3 else out


def _snapshot(obj) -> tuple:
    co = np.zeros(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    return np.array(obj.matrix_world).tobytes(), co.tobytes(), obj.data.name, len(obj.data.materials)


def _check_result(source, result, report_gaussians: int | None = None) -> None:
    from orbitex.addon.scene_gaussians import Y_UP_TO_Z_UP

    assert result.type == "POINTCLOUD"
    assert np.allclose(np.array(result.matrix_world), np.array(source.matrix_world @ Y_UP_TO_Z_UP), atol=1e-5)
    assert list(result.users_collection) == list(source.users_collection)
    names = {a.name for a in result.data.attributes}
    assert {"position", "opacity", "scale_0", "rot_3", "f_dc_2", "f_rest_8"} <= names  # degree 1: 9 f_rest
    count = len(result.data.points)
    assert count > 50 and (report_gaussians is None or count == report_gaussians)
    # every Gaussian in the sphere's own frame: on its surface (radius 1), red above, blue below
    to_local = source.matrix_world.inverted() @ result.matrix_world
    positions = _attribute(result, "position")
    local = np.array([to_local @ Vector(p.tolist()) for p in positions])
    radius = np.linalg.norm(local, axis=1)
    assert abs(np.median(radius) - 1.0) < 0.05, np.percentile(radius, [5, 50, 95])
    red_minus_blue = _attribute(result, "f_dc_0") - _attribute(result, "f_dc_2")
    top, bottom = local[:, 2] > 0.3, local[:, 2] < -0.3
    assert top.sum() > 10 and bottom.sum() > 10
    assert np.median(red_minus_blue[top]) > 1.0 and np.median(red_minus_blue[bottom]) < -1.0


def test_execute_adds_gaussians_at_the_textured_mesh(session):
    source = textured_sphere("Ball Exec")
    bystander_names = _object_names()
    before = _snapshot(source)
    assert bpy.ops.orbitex.reconstruct_gaussians(**TINY) == {"FINISHED"}
    added = _object_names() - bystander_names
    assert added == {"Ball Exec Gaussians"}
    job = session.board.jobs()[-1]
    assert (job.state, job.type, job.target) == ("done", "reconstruct", "Ball Exec")
    report = json.loads(job.downloaded["report"].read_text())
    assert report["source"] == "mesh" and 1 <= report["iterations"] <= TINY["iterations"]  # held-out views may stop it early
    _check_result(source, bpy.data.objects["Ball Exec Gaussians"], report["gaussians"])
    assert "Gaussians" in job.message and "PSNR" in job.message
    record = session.local_backend().client().job(job.backend_id)
    assert record["params"]["view_count"] == TINY["view_count"] and record["params"]["size"] == TINY["size"]
    assert _snapshot(source) == before  # the source is untouched
    assert bpy.context.view_layer.objects.active == source


def test_invoke_returns_at_once_and_the_timer_applies(session):
    from orbitex.operators import reconstruct_gaussians as op

    source = textured_sphere("Ball Timer")
    source.location = (-3.0, 0.0, 0.0)
    bpy.context.view_layer.update()
    names = _object_names()
    job = op.start(op.find_source(source), op.Settings(**{k: v for k, v in TINY.items()}))
    assert job.state in ("queued", "running") and bpy.app.timers.is_registered(session.tick)
    assert _object_names() == names
    source.location = (-3.0, 2.0, 1.0)  # moved while the job runs: the result follows it
    bpy.context.view_layer.update()
    deadline = time.monotonic() + 240
    while job.active:
        assert time.monotonic() < deadline, (job.state, job.stage, job.message)
        session.tick()
        time.sleep(0.2)
    assert job.state == "done", job.message
    assert _object_names() - names == {"Ball Timer Gaussians"}
    _check_result(source, bpy.data.objects["Ball Timer Gaussians"])


def test_an_image_without_its_video_model_fails_clearly_and_adds_nothing(session):
    """An image empty as the source: the image path needs the orbit video model, which is not
    installed here, so the job fails with the model's name and install command."""
    image = bpy.data.images.new("Subject", 32, 32, alpha=True)
    pixels = np.zeros((32, 32, 4), np.float32)
    pixels[8:24, 8:24] = (0.8, 0.2, 0.2, 1.0)
    image.pixels[:] = pixels.ravel()
    bpy.ops.object.empty_add(type="IMAGE")
    empty = bpy.context.active_object
    empty.data = image
    names = _object_names()
    with pytest.raises(RuntimeError) as err:
        bpy.ops.orbitex.reconstruct_gaussians(**TINY)
    message = str(err.value)
    assert "not installed" in message and "models download" in message, message
    assert _object_names() == names
    job = session.board.jobs()[-1]
    assert job.state == "failed" and set(job.inputs) == {"image"}
