"""orbitex.render_orbit_preview: render the active mesh from an orbit on the backend and bring the
contact sheet back as an image datablock named after the object."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import bpy
from bpy.props import IntProperty

from ..addon import scene_io, session
from ..addon.client import BackendClient, BackendError
from ..addon.jobs import Job, run_blocking, step

JOB_TYPE = "render-orbit"
CONTACT_SHEET = "contact_sheet"  # the pipeline's result name for the contact-sheet PNG


def preview_image_name(object_name: str) -> str:
    return f"{object_name} orbit preview"


def apply_contact_sheet(job: Job) -> None:
    scene_io.load_packed_image(job.downloaded[CONTACT_SHEET], preview_image_name(job.target))


class SubmitError(Exception):
    """The job could not be started; the message says why (the scene is unchanged)."""


def submit(obj: bpy.types.Object, frames: int, size: int) -> tuple[Job, BackendClient | None]:
    """Connect to the backend, export `obj` and submit the job (its first step; left to the timer
    while a local backend starts on the UI path)."""
    try:
        client = session.connect()
    except BackendError as exc:
        raise SubmitError(f"Orbitex backend unavailable: {exc}") from None
    work_dir = Path(tempfile.mkdtemp(prefix="orbitex-job-"))
    try:
        mesh = scene_io.export_mesh_glb(obj, work_dir / "inputs" / "mesh.glb")
    except (RuntimeError, ValueError, OSError) as exc:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise SubmitError(f"could not export {obj.name!r}: {exc}") from None
    job = Job(type=JOB_TYPE, params={"frames": frames, "size": size}, inputs={"mesh": mesh},
              target=obj.name, work_dir=work_dir, fetch=(CONTACT_SHEET,))
    if client is None:
        return job, None
    step(job, client, apply_contact_sheet)
    if not job.active and job.state != "done":
        shutil.rmtree(work_dir, ignore_errors=True)
        raise SubmitError(f"Orbitex {JOB_TYPE} for {obj.name!r} {job.state}: {job.message}")
    return job, client


def start(obj: bpy.types.Object, frames: int, size: int) -> Job:
    """The body of invoke(): submit, then leave the job to the session timer (returns at once)."""
    with session.ui_call():
        job, client = submit(obj, frames, size)
    return session.track(job, client, apply_contact_sheet)


def run(obj: bpy.types.Object, frames: int, size: int) -> Job:
    """The body of execute(): submit and step the job until it ends (result applied when done)."""
    job, client = submit(obj, frames, size)
    run_blocking(job, client, apply_contact_sheet)
    return session.track(job, client, apply_contact_sheet)  # listed in the Jobs panel


class ORBITEX_OT_render_orbit_preview(bpy.types.Operator):
    bl_idname = "orbitex.render_orbit_preview"
    bl_label = "Orbit Preview"
    bl_description = ("Render the active mesh (modifiers applied) from an orbit of cameras on the Orbitex "
                      "backend and bring the contact sheet back as an image")
    bl_options = {"UNDO"}  # no REGISTER: a Redo-panel tweak must not submit (and wait for) another job

    frames: IntProperty(name="Frames", default=8, min=1, max=720, description="Views along each orbit")
    size: IntProperty(name="Size", default=256, min=16, max=4096, subtype="PIXEL",
                      description="Width and height of each view in pixels")

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "MESH"

    def invoke(self, context, event):
        """From the UI: submit and return at once; the session timer steps the job."""
        try:
            job = start(context.active_object, self.frames, self.size)
        except SubmitError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Orbitex {JOB_TYPE} job submitted for {job.target!r}")
        return {"FINISHED"}

    def execute(self, context):
        """Scripts, background mode, tests: block until the job is done and the image applied."""
        try:
            job = run(context.active_object, self.frames, self.size)
        except SubmitError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if job.state != "done":
            self.report({"ERROR"}, f"Orbitex {JOB_TYPE} for {job.target!r} {job.state}: {job.message}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Orbitex: image {preview_image_name(job.target)!r} added")
        return {"FINISHED"}
