"""orbitex.reconstruct_gaussians: 3D Gaussians of a textured mesh or of an image, as a new
point-cloud object placed at the source.

Sources, in order: an image given to the operator (a file path or an Image datablock; with
`use_mesh`, the active mesh is sent too as the white mesh that places the first Gaussians), an
active image empty (Add > Image), or the active textured mesh (its material and texture go with
it). Meshes are uploaded in their own frame, so the result takes the source's transform; an
image alone comes back in a unit box (+Y up, seen from +Z), placed on the image empty at its
display size, or at the 3D cursor.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty
from mathutils import Matrix

from ..addon import scene_io, scene_meshes, session
from ..addon.client import BackendClient
from ..addon.jobs import Job, run_blocking
from ..addon.scene_gaussians import Y_UP_TO_Z_UP, import_gaussians
from .job_submit import SubmitError, connect, first_step, new_work_dir, placed_collections, placed_matrix, placement

JOB_TYPE = "reconstruct"
GAUSSIANS = "gaussians"  # the pipeline's result names
REPORT = "report"


@dataclass
class Settings:
    """The job's params (names as the reconstruct pipeline's Params; the defaults are the operator's
    properties', which are the backend's: tests/blender/test_operator_defaults.py)."""

    view_count: int
    size: int
    iterations: int
    gaussians: int
    rounds: int
    sh_degree: int

    def params(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Source:
    name: str                       # names the job and the new object
    mesh: bpy.types.Object | None   # uploaded as `mesh` (textured, or white with an image)
    image: bpy.types.Image | None
    image_path: Path | None
    frame: Matrix                   # the PLY's coordinates -> world
    anchor: bpy.types.Object | None  # the object the result follows (mesh or image empty)
    collections: list


def result_name(source_name: str) -> str:
    return f"{source_name} Gaussians"


def find_source(active: bpy.types.Object | None, image_path: str = "", image_name: str = "",
                use_mesh: bool = True) -> Source:
    """What to reconstruct from, or SubmitError saying what to select."""
    cursor = bpy.context.scene.cursor.matrix.copy()
    mesh = active if active is not None and active.type == "MESH" else None
    if image_path.strip() or image_name.strip():
        image, path = None, None
        if image_name.strip():
            image = bpy.data.images.get(image_name)
            if image is None:
                raise SubmitError(f"there is no image {image_name!r} in this file")
        else:
            path = Path(bpy.path.abspath(image_path)).expanduser()
            if not path.is_file():
                raise SubmitError(f"image file {str(path)!r} does not exist")
        name = image.name if image is not None else path.stem
        if use_mesh and mesh is not None:
            return Source(name, mesh, image, path, mesh.matrix_world @ Y_UP_TO_Z_UP, mesh,
                          scene_meshes.home_collections(mesh))
        return Source(name, None, image, path, cursor @ Y_UP_TO_Z_UP, None,
                      [bpy.context.collection or bpy.context.scene.collection])
    if active is not None and active.type == "EMPTY" and active.empty_display_type == "IMAGE":
        if active.data is None:
            raise SubmitError(f"the image empty {active.name!r} shows no image")
        # the image's unit box sits on the empty's image plane (local XY, seen from +Z) at its size
        frame = active.matrix_world @ Matrix.Scale(active.empty_display_size, 4)
        return Source(active.name, None, active.data, None, frame, active, scene_meshes.home_collections(active))
    if mesh is not None:
        return Source(mesh.name, mesh, None, None, mesh.matrix_world @ Y_UP_TO_Z_UP, mesh,
                      scene_meshes.home_collections(mesh))
    raise SubmitError("select a textured mesh or an image empty, or give an image (file or image datablock)")


def apply_gaussians(job: Job) -> None:
    obj = import_gaussians(job.downloaded[GAUSSIANS], result_name(job.target), placed_matrix(job.meta),
                           placed_collections(job.meta))
    job.meta["result_object"] = obj.name
    job.message = f"added {obj.name!r}: {report_summary(job.downloaded.get(REPORT))}"


def report_summary(path: Path | None) -> str:
    """The report's figures in one line (Gaussians, iterations, fit time, PSNR)."""
    try:
        report = json.loads(Path(path).read_text()) if path else {}
    except (OSError, ValueError):
        return "no report"
    parts = [f"{report['gaussians']} Gaussians" if "gaussians" in report else ""]
    if report.get("source") == "mesh":
        parts += [f"{report.get('iterations')} iterations in {report.get('fit_seconds')} s",
                  f"training PSNR {report.get('training_psnr_db')} dB"]
    elif report.get("rounds"):
        last = report["rounds"][-1]
        parts += [f"{len(report['rounds']) - 1} refinement rounds",
                  f"PSNR to the video {last.get('psnr_to_video_db')} dB"]
    return ", ".join(p for p in parts if p) or "no figures"


def submit(source: Source, settings: Settings) -> tuple[Job, BackendClient | None]:
    """Export the source, submit the job (its first step); SubmitError when that is not possible."""
    client = connect()
    work_dir = new_work_dir()
    inputs: dict[str, Path] = {}
    try:
        if source.mesh is not None:
            inputs["mesh"] = scene_meshes.export_local_glb(source.mesh, work_dir / "inputs" / "mesh.glb",
                                                           materials=True)
        if source.image is not None:
            inputs["image"] = scene_io.image_file(source.image, work_dir / "inputs", "image")
        elif source.image_path is not None:
            inputs["image"] = source.image_path
    except (RuntimeError, ValueError, OSError) as exc:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise SubmitError(f"could not export {source.name!r}: {exc}") from None
    job = Job(type=JOB_TYPE, params=settings.params(), inputs=inputs, target=source.name, work_dir=work_dir,
              fetch=(GAUSSIANS, REPORT))
    job.meta.update(placement(source.frame, source.anchor, source.collections))
    first_step(job, client, apply_gaussians)
    return job, client


def start(source: Source, settings: Settings) -> Job:
    """invoke()'s body: submit, then leave the job to the session timer (returns at once)."""
    with session.ui_call():
        job, client = submit(source, settings)
    return session.track(job, client, apply_gaussians)


def run(source: Source, settings: Settings) -> Job:
    """execute()'s body: submit and step the job until it ends (the object added when done)."""
    job, client = submit(source, settings)
    run_blocking(job, client, apply_gaussians)
    return session.track(job, client, apply_gaussians)


class ORBITEX_OT_reconstruct_gaussians(bpy.types.Operator):
    bl_idname = "orbitex.reconstruct_gaussians"
    bl_label = "Reconstruct Gaussians"
    bl_description = ("Fit 3D Gaussians to the active textured mesh, or reconstruct them from an image (image "
                      "empty, file or image datablock), on the Orbitex backend; the result is a new point-cloud "
                      "object at the source")
    # No REGISTER: an "Adjust Last Operation" redo would submit the job again.
    bl_options = {"UNDO"}

    image_path: StringProperty(name="Image File", subtype="FILE_PATH",
                               description="An image of the subject (instead of the active object)")
    image: StringProperty(name="Image", description="An image datablock of the subject (instead of the active object)")
    use_mesh: BoolProperty(name="Use Active Mesh", default=True,
                           description="With an image, send the active mesh too: its surface places the first Gaussians")
    view_count: IntProperty(name="Views", default=64, min=2, max=1000, description="Cameras the Gaussians are fitted to")
    size: IntProperty(name="Size", default=256, min=16, max=4096, subtype="PIXEL", description="View size in pixels")
    iterations: IntProperty(name="Iterations", default=1000, min=1, max=100000,
                            description="Iterations of the first fit (each refit uses half)")
    gaussians: IntProperty(name="Gaussians", default=0, min=0, max=10_000_000,
                           description="Initial Gaussians (densification adds and removes); 0: size^2 / 2 "
                                       "within 2,000-20,000")
    rounds: IntProperty(name="Rounds", default=2, min=0, max=10,
                        description="IM-3D refinement rounds (image input): render, renoise, regenerate, refit")
    sh_degree: IntProperty(name="SH Degree", default=3, min=0, max=3,
                           description="Spherical-harmonic degree of the view-dependent colour")
    # Set by invoke(): the dialog's OK runs execute(), which then submits and returns at once.
    wait: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    def settings(self) -> Settings:
        return Settings(self.view_count, self.size, self.iterations, self.gaussians, self.rounds, self.sh_degree)

    def invoke(self, context, event):
        """From the UI: a dialog with the settings; OK submits and returns at once."""
        self.wait = False
        return context.window_manager.invoke_props_dialog(self, confirm_text="Reconstruct")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "image_path")
        layout.prop_search(self, "image", bpy.data, "images")
        layout.prop(self, "use_mesh")
        for name in ("view_count", "size", "iterations", "gaussians", "rounds", "sh_degree"):
            layout.prop(self, name)

    def execute(self, context):
        """Scripts, background mode, tests: block until the Gaussians are in the scene."""
        try:
            source = find_source(context.active_object, self.image_path, self.image, self.use_mesh)
            job = (run if self.wait else start)(source, self.settings())
        except SubmitError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not self.wait:
            self.report({"INFO"}, f"Orbitex {JOB_TYPE} job submitted for {job.target!r}")
            return {"FINISHED"}
        if job.state != "done":
            self.report({"ERROR"}, f"Orbitex {JOB_TYPE} for {job.target!r} {job.state}: {job.message}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Orbitex: {job.message}")
        return {"FINISHED"}

