"""orbitex.complete_back end to end against a real local backend: the front half of a sphere
(as a mesh, and as bare points in a collection) is completed by the geometric engine at a small
resolution; each completed mesh is a new closed object beside its scan, with the scan's
transform, its front on the scan and its back where the sphere's was; the report's figures are in
the job message; the scans are never modified; a scan the backend refuses adds nothing."""
from __future__ import annotations

import math
import time

import bpy
import bmesh  # noqa: I001 - bmesh is importable only after bpy
import numpy as np
import pytest
from mathutils import Vector
from mathutils.bvhtree import BVHTree

from orbitex_testing import NEEDS_BACKEND

pytestmark = NEEDS_BACKEND

RESOLUTION = 32
RADIUS = 0.5



def front_half_sphere(name: str, collection) -> bpy.types.Object:
    """The half of a sphere (radius 0.5) facing its local -Y, as a scanner on that side sees it;
    moved and turned so the object frame is not the world's."""
    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=RADIUS)
    bmesh.ops.delete(bm, geom=[v for v in bm.verts if v.co.y > 1e-4], context="VERTS")
    bm.to_mesh(mesh)
    bm.free()
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    obj.location, obj.rotation_euler = (1.5, -0.5, 0.8), (0.2, 0.0, math.radians(30))
    bpy.context.view_layer.update()
    return obj


def scanner_direction(obj) -> Vector:
    """The way the scanner looked, in world axes: along the object's local +Y."""
    return (obj.matrix_world.to_3x3() @ Vector((0.0, 1.0, 0.0))).normalized()


def snapshot(obj) -> tuple:
    if obj.type == "MESH":
        co = np.zeros(len(obj.data.vertices) * 3, np.float32)
        obj.data.vertices.foreach_get("co", co)
        extra = (len(obj.data.polygons), len(obj.data.edges))
    else:
        co = np.zeros(len(obj.data.points) * 3, np.float32)
        obj.data.attributes["position"].data.foreach_get("vector", co)
        extra = ()
    return np.array(obj.matrix_world).tobytes(), co.tobytes(), extra, obj.data.name, len(obj.modifiers)


def object_names() -> set[str]:
    return {o.name for o in bpy.data.objects}


def local_vertices(obj) -> np.ndarray:
    co = np.zeros(len(obj.data.vertices) * 3, np.float64)
    obj.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def check_completion(scan_points: np.ndarray, scan, result) -> None:
    """The result sits at the scan's transform, is closed, holds the scan's front (within a voxel)
    and a back where the sphere's was; its volume is the sphere's."""
    assert result.type == "MESH"
    assert np.allclose(np.array(result.matrix_world), np.array(scan.matrix_world), atol=1e-6)
    assert list(result.users_collection) == list(scan.users_collection)
    mesh = result.data
    bm = bmesh.new()
    bm.from_mesh(mesh)
    try:
        assert all(len(e.link_faces) == 2 for e in bm.edges), "the completed mesh is not closed"
        volume = bm.calc_volume()
    finally:
        bm.free()
    sphere = 4 / 3 * math.pi * RADIUS ** 3
    assert abs(volume - sphere) < 0.25 * sphere, (volume, sphere)
    vertices = local_vertices(result)
    bvh = BVHTree.FromPolygons(vertices.tolist(), [tuple(p.vertices) for p in mesh.polygons])
    voxel = 2 * RADIUS / RESOLUTION
    distances = [bvh.find_nearest(Vector(p.tolist()))[3] for p in scan_points]
    assert max(distances) <= voxel, (max(distances), voxel)
    assert vertices[:, 1].max() > 0.8 * RADIUS  # the back (local +Y), which the scan never had


def test_execute_completes_a_front_half_beside_the_scan(session):
    collection = bpy.data.collections.new("Scans")
    bpy.context.scene.collection.children.link(collection)
    scan = front_half_sphere("Front Scan", collection)
    bpy.ops.object.select_all(action="DESELECT")
    scan.select_set(True)
    bpy.context.view_layer.objects.active = scan
    before, names = snapshot(scan), object_names()
    assert bpy.ops.orbitex.complete_back(direction_source="VECTOR", direction=scanner_direction(scan),
                                         resolution=RESOLUTION) == {"FINISHED"}
    assert object_names() - names == {"Front Scan completed"}
    assert snapshot(scan) == before
    job = session.board.jobs()[-1]
    assert (job.state, job.type, job.target) == ("done", "complete", "Front Scan")
    record = session.local_backend().client().job(job.backend_id)
    given = [float(v) for v in record["params"]["direction"].split(",")]
    assert np.allclose(given, [0.0, 0.0, -1.0], atol=1e-5)  # local +Y in the file's glTF frame
    for words in ("Front Scan completed: front deviation max", "voxel", "watertight", "volume"):
        assert words in job.message, job.message
    check_completion(local_vertices(scan), scan, bpy.data.objects["Front Scan completed"])


def test_invoke_completes_every_scan_of_a_collection(session):
    """Bare points (a face-less mesh, uploaded as a PLY point cloud) in a collection, direction
    from the scene camera; submitted from the UI path and applied by the timer."""
    from orbitex.operators import complete_back as op

    collection = bpy.data.collections.new("Point Scans")
    bpy.context.scene.collection.children.link(collection)
    surface = front_half_sphere("Dense Front", collection)
    rng = np.random.default_rng(0)
    d = rng.normal(size=(4000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d[:, 1] = -np.abs(d[:, 1])  # the front half (local y <= 0)
    points = RADIUS * d
    bpy.data.objects.remove(surface)
    mesh = bpy.data.meshes.new("Point Scan")
    mesh.from_pydata(points.tolist(), [], [])
    scan = bpy.data.objects.new("Point Scan", mesh)
    collection.objects.link(scan)
    scan.location, scan.rotation_euler = (-1.0, 0.5, 0.3), (0.0, 0.3, -0.4)
    bpy.context.view_layer.update()
    camera = bpy.data.objects.new("Scanner", bpy.data.cameras.new("Scanner"))
    bpy.context.scene.collection.objects.link(camera)
    camera.location = scan.matrix_world @ Vector((0.0, -3.0, 0.0))
    camera.rotation_euler = scanner_direction(scan).to_track_quat("-Z", "Y").to_euler()  # a camera looks along -Z
    bpy.context.scene.camera = camera
    bpy.context.view_layer.update()
    before, names = snapshot(scan), object_names()
    operator_direction = camera.matrix_world.to_3x3() @ Vector((0.0, 0.0, -1.0))
    assert (operator_direction - scanner_direction(scan)).length < 1e-5
    scans = op.scans_of(bpy.context, "Point Scans")
    assert scans == [scan]
    jobs, errors = op.start_all(scans, {"resolution": RESOLUTION}, operator_direction)
    assert errors == [] and len(jobs) == 1
    job = jobs[0]
    assert job.state in ("queued", "running") and job.inputs["scan"].suffix == ".ply"
    assert object_names() == names
    deadline = time.monotonic() + 180
    while job.active:
        assert time.monotonic() < deadline, (job.state, job.stage, job.message)
        session.tick()
        time.sleep(0.2)
    assert job.state == "done", job.message
    assert object_names() - names == {"Point Scan completed"}
    assert snapshot(scan) == before
    check_completion(points, scan, bpy.data.objects["Point Scan completed"])
    bpy.data.objects.remove(camera)


def test_a_scan_the_backend_refuses_adds_nothing(session):
    mesh = bpy.data.meshes.new("Three Points")
    mesh.from_pydata([(0, 0, 0), (0.1, 0, 0), (0, 0.1, 0)], [], [])
    scan = bpy.data.objects.new("Three Points", mesh)
    bpy.context.scene.collection.objects.link(scan)
    bpy.ops.object.select_all(action="DESELECT")
    scan.select_set(True)
    bpy.context.view_layer.objects.active = scan
    before, names = snapshot(scan), object_names()
    with pytest.raises(RuntimeError) as err:
        bpy.ops.orbitex.complete_back(resolution=RESOLUTION)
    message = str(err.value)
    assert "complete for 'Three Points' failed" in message and "3 valid point(s)" in message, message
    assert "Traceback" not in message
    assert object_names() == names and snapshot(scan) == before


def test_nothing_to_complete_is_refused_before_any_job(session):
    bpy.ops.object.select_all(action="DESELECT")
    jobs = len(session.board.jobs())
    with pytest.raises(RuntimeError, match="holds no mesh or point-cloud object"):
        bpy.ops.orbitex.complete_back()
    with pytest.raises(RuntimeError, match="no collection 'Nope'"):
        bpy.ops.orbitex.complete_back(collection="Nope")
    assert len(session.board.jobs()) == jobs
