"""orbitex.complete_back: close the back of scanned fronts on the Orbitex backend (job `complete`).

One job per scan: the selected mesh / point-cloud objects, or those of a named collection. A scan
is uploaded in its object frame (a GLB, or a PLY of points when it has no faces) and never
modified; each completed object comes back as a new mesh beside it, in the same collections and
at the same transform, so its front lies on the scan. The report's figures (front deviation,
watertightness, volume) go into the job's message.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatVectorProperty, IntProperty, StringProperty
from mathutils import Vector

from ..addon import scene_meshes, session
from ..addon.client import BackendClient
from ..addon.jobs import Job, run_blocking
from ..addon.ply_format import read_triangles
from .job_submit import SubmitError, connect, first_step, new_work_dir, placed_collections, placed_matrix, placement

JOB_TYPE = "complete"
REPORT = "report"
ENGINES = (("geometric", "Geometric", "Weight-free completion: the back is closed inside the region the "
                                      "scanner saw as free, mirrored by a symmetry plane when well supported"),
           ("direct3d-s2", "Direct3D-S2", "Front-guided 3D latent diffusion (needs the Direct3D-S2 package and weights)"),
           ("trellis", "TRELLIS", "Front-guided 3D latent diffusion (needs the TRELLIS package and weights)"))


def result_object_name(scan_name: str, result_stem: str) -> str:
    """'<scan> completed', or '<scan> completed object2' for the parts of a split scene."""
    part = result_stem[len("scan"):].lstrip("_") if result_stem.startswith("scan") else result_stem
    return f"{scan_name} completed" + (f" {part}" if part else "")


def scan_direction(obj: bpy.types.Object, world_direction: Vector | None) -> str | None:
    """The job's direction param: a world direction in the scan file's frame (object frame, +Y up)."""
    if world_direction is None:
        return None
    local = obj.matrix_world.to_3x3().inverted_safe() @ Vector(world_direction)
    if local.length < 1e-9:
        raise SubmitError(f"the scan direction is zero in {obj.name!r}'s frame")
    x, y, z = scene_meshes.blender_to_gltf(local.normalized())[0]
    return f"{x:.6g},{y:.6g},{z:.6g}"


def report_summary(report: dict, scan_name: str, added: dict[str, str] | None = None) -> str:
    """One line per object: front deviation (max / mean, and in voxels), watertight, volume.
    `added` maps the backend's object names to the Blender objects made from them."""
    lines = []
    for item in report.get("objects", []):
        stem = str(item.get("name", "scan"))
        name = (added or {}).get(stem) or result_object_name(scan_name, stem)
        dev = item.get("front_deviation", {})
        watertight = "watertight" if item.get("watertight") else "NOT watertight"
        lines.append(f"{name}: front deviation max {dev.get('max', float('nan')):.4g} "
                     f"({dev.get('max_voxels', float('nan')):.2f} voxel), mean {dev.get('mean', float('nan')):.3g}; "
                     f"{watertight}; volume {item.get('volume', float('nan')):.4g}")
    notes = [n for n in report.get("scan_notes", [])]
    return "; ".join(lines) + (f" (notes: {'; '.join(notes)})" if notes else "")


def apply_completion(job: Job) -> None:
    """Every completed object of the job as a new mesh beside the scan (all checked before any is added)."""
    names = sorted(n for n in job.downloaded if n.lower().endswith(".ply"))
    if not names:
        raise ValueError("the backend returned no completed mesh")
    meshes = {Path(n).stem: read_triangles(job.downloaded[n]) for n in names}  # a damaged file adds nothing
    matrix, collections = placed_matrix(job.meta), placed_collections(job.meta)
    added: dict[str, str] = {}
    for stem, (positions, faces) in meshes.items():
        obj = scene_meshes.mesh_object(result_object_name(job.target, stem), positions, faces, matrix, collections)
        added[stem] = obj.name
    job.meta["result_objects"] = list(added.values())
    report = {}
    if REPORT in job.downloaded:
        try:
            report = json.loads(job.downloaded[REPORT].read_text())
        except (OSError, ValueError):
            report = {}
    job.message = report_summary(report, job.target, added) or f"added {', '.join(map(repr, added.values()))} (no report)"


def submit(obj: bpy.types.Object, params: dict, world_direction: Vector | None) -> tuple[Job, BackendClient | None]:
    client = connect()
    work_dir = new_work_dir()
    try:
        scan = scene_meshes.export_scan(obj, work_dir / "inputs")
    except (RuntimeError, ValueError, OSError) as exc:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise SubmitError(f"could not export {obj.name!r}: {exc}") from None
    job = Job(type=JOB_TYPE, params={**params, "direction": scan_direction(obj, world_direction)},
              inputs={"scan": scan}, target=obj.name, work_dir=work_dir)  # fetch all: names depend on the split
    job.meta.update(placement(obj.matrix_world.copy(), obj, scene_meshes.home_collections(obj)))
    first_step(job, client, apply_completion)
    return job, client


def scans_of(context, collection_name: str = "") -> list[bpy.types.Object]:
    if collection_name.strip():
        collection = bpy.data.collections.get(collection_name)
        if collection is None:
            raise SubmitError(f"there is no collection {collection_name!r}")
        objects = list(collection.all_objects)
    else:
        objects = list(context.selected_objects)
    scans = [o for o in objects if scene_meshes.is_scan_object(o)]
    if not scans:
        where = f"collection {collection_name!r}" if collection_name.strip() else "the selection"
        raise SubmitError(f"{where} holds no mesh or point-cloud object to complete")
    return scans


def start_all(objects, params: dict, world_direction: Vector | None) -> tuple[list[Job], list[str]]:
    """invoke()'s body: one job per scan, left to the session timer. Returns jobs and refusals."""
    jobs, errors = [], []
    for obj in objects:
        try:
            with session.ui_call():
                job, client = submit(obj, params, world_direction)
        except SubmitError as exc:
            errors.append(str(exc))
            continue
        jobs.append(session.track(job, client, apply_completion))
    return jobs, errors


def run_all(objects, params: dict, world_direction: Vector | None) -> tuple[list[Job], list[str]]:
    """execute()'s body: submit every scan (the backend queues them), then wait for each in turn."""
    submitted, errors = [], []
    for obj in objects:
        try:
            submitted.append(submit(obj, params, world_direction))
        except SubmitError as exc:
            errors.append(str(exc))
    for job, client in submitted:
        run_blocking(job, client, apply_completion)
        session.track(job, client, apply_completion)
    return [job for job, _ in submitted], errors


class ORBITEX_OT_complete_back(bpy.types.Operator):
    bl_idname = "orbitex.complete_back"
    bl_label = "Complete Back"
    bl_description = ("Close the unseen back of scanned fronts (selected objects or a collection) on the Orbitex "
                      "backend; each completed mesh is a new object beside its scan, which is left unchanged")
    # No REGISTER: an "Adjust Last Operation" redo would submit the job again.
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context):  # scans come from the selection, or from a collection chosen in the dialog
        return bool(context.selected_objects) or len(bpy.data.collections) > 0

    collection: StringProperty(name="Collection", description="Complete every scan in this collection "
                                                              "(empty: the selected objects)")
    direction_source: EnumProperty(
        name="Scan Direction",
        items=[("AUTO", "Estimate", "Estimate the way the scanner looked from the scan itself"),
               ("CAMERA", "Scene Camera", "The scanner looked along the scene camera's view"),
               ("VECTOR", "Vector", "The scanner looked along the Direction below (world axes)")],
        default="AUTO")
    direction: FloatVectorProperty(name="Direction", size=3, default=(0.0, 1.0, 0.0), subtype="DIRECTION",
                                   description="The way the scanner looked, in world axes")
    engine: EnumProperty(name="Engine", items=ENGINES, default="geometric")
    scene: BoolProperty(name="Split Scene", default=False,
                        description="The scan holds several objects: remove the ground plane, split, complete each")
    resolution: IntProperty(name="Resolution", default=128, min=16, max=512,
                            description="Voxels across the front's larger side")
    symmetry: BoolProperty(name="Mirror by Symmetry", default=True,
                           description="Mirror by a detected symmetry plane when it has strong support")
    wait: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})  # see reconstruct_gaussians

    def params(self) -> dict:
        return {"engine": self.engine, "scene": self.scene, "resolution": self.resolution, "symmetry": self.symmetry}

    def world_direction(self, context) -> Vector | None:
        if self.direction_source == "CAMERA":
            camera = context.scene.camera
            if camera is None:
                raise SubmitError("the scene has no camera to take the scan direction from")
            return camera.matrix_world.to_3x3() @ Vector((0.0, 0.0, -1.0))
        if self.direction_source == "VECTOR":
            return Vector(self.direction)
        return None

    def invoke(self, context, event):
        self.wait = False
        return context.window_manager.invoke_props_dialog(self, confirm_text="Complete")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop_search(self, "collection", bpy.data, "collections")
        layout.prop(self, "direction_source")
        if self.direction_source == "VECTOR":
            layout.prop(self, "direction")
        for name in ("engine", "scene", "resolution", "symmetry"):
            layout.prop(self, name)

    def execute(self, context):
        try:
            scans = scans_of(context, self.collection)
            direction = self.world_direction(context)
        except SubmitError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        jobs, errors = (run_all if self.wait else start_all)(scans, self.params(), direction)
        done = [j for j in jobs if j.state == "done" or not self.wait]
        errors += [f"Orbitex {JOB_TYPE} for {j.target!r} {j.state}: {j.message}" for j in jobs if j not in done]
        # ERROR only when nothing at all came of it (scripts then get an exception); else warnings
        for error in errors:
            self.report({"WARNING"} if done else {"ERROR"}, error)
        if not done:
            return {"CANCELLED"}
        if not self.wait:
            self.report({"INFO"}, f"Orbitex {JOB_TYPE}: {len(jobs)} job(s) submitted")
        else:
            for job in done:
                self.report({"INFO"}, f"Orbitex: {job.message}")
        return {"FINISHED"}
