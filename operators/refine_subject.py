"""orbitex.refine_subject: TIRE refinement of the active textured mesh or Gaussian point cloud from
photos of the subject: what the source view shows is kept, what it never saw is repainted.

A textured mesh gets the refined texture as a new material in a new slot (old materials kept);
Gaussians come back as a new point-cloud object beside the source ("<source> refined"); a 4D
result (an animated asset refined to Gaussians) comes back as an empty holding one point cloud per
time, each visible on its own timeline frame. Subject photos are image datablocks or files.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import bpy
from bpy.props import CollectionProperty, EnumProperty, IntProperty, StringProperty

from ..addon import scene_io, scene_meshes, session
from ..addon.client import BackendClient
from ..addon.glb_read import read_glb
from ..addon.jobs import Job, run_blocking
from ..addon.scene_gaussians import export_gaussians, import_gaussian_sequence, import_gaussians, is_gaussian_object
from .job_submit import SubmitError, connect, first_step, new_work_dir, placed_collections, placed_matrix, placement

JOB_TYPE = "refine"
MAX_SUBJECTS = 8  # the service's roles subject, subject_1 .. subject_7
INPAINTERS = [("opencv", "OpenCV (no weights)", "Colours carried from the views already finished, OpenCV "
               "inpainting for what none saw"),
              ("sd-inpaint", "Stable Diffusion", "Stable Diffusion inpainting with a subject LoRA (needs weights: "
               "python -m backend models download sd-inpaint)")]
CONSISTENCY = [("none", "None (no weights)", "The asset is refit from the painted views as they are"),
               ("mv-sd", "Multi-view SD", "Stable Diffusion img2img over grids of the painted views draws them into "
                "agreement before the refit; seen pixels kept (needs weights: python -m backend models download "
                "sd-v1-5)")]


class OrbitexSubjectImage(bpy.types.PropertyGroup):
    """One subject photo: `name` is an image datablock of this file or an image file path."""


def result_name(source_name: str) -> str:
    return f"{source_name} refined"


def textured_image(obj: bpy.types.Object) -> bpy.types.Image | None:
    """The first image an Image Texture node of the object's materials shows (what the glTF
    exporter writes as the base colour), or None."""
    for slot in obj.material_slots:
        material = slot.material
        if material is None or not material.use_nodes:
            continue
        for node in material.node_tree.nodes:
            if node.type == "TEX_IMAGE" and node.image is not None:
                return node.image
    return None


@dataclass
class Asset:
    obj: bpy.types.Object
    kind: str  # "mesh" | "gaussians"


def find_asset(obj: bpy.types.Object | None) -> Asset:
    if obj is not None and obj.type == "MESH":
        if textured_image(obj) is None:
            raise SubmitError(f"{obj.name!r} has no texture: texture it first (Texture panel), then refine")
        return Asset(obj, "mesh")
    if is_gaussian_object(obj):
        return Asset(obj, "gaussians")
    raise SubmitError("select a textured mesh or a Gaussian point cloud to refine")


def subject_files(names: list[str], into: Path) -> dict[str, Path]:
    """The subject photos as upload roles (subject, subject_1, ...): image datablocks by name, else files."""
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise SubmitError("give at least one photo of the subject (an image in this file or an image file)")
    if len(names) > MAX_SUBJECTS:
        raise SubmitError(f"at most {MAX_SUBJECTS} subject photos (got {len(names)})")
    roles = {}
    for i, name in enumerate(names):
        role = "subject" if i == 0 else f"subject_{i}"
        image = bpy.data.images.get(name)
        if image is not None:
            if image.size[0] == 0 or image.size[1] == 0:
                raise SubmitError(f"the image {name!r} has no pixels (is its file missing?)")
            roles[role] = scene_io.image_file(image, into, role)
            continue
        path = Path(bpy.path.abspath(name)).expanduser()
        if not path.is_file():
            raise SubmitError(f"subject photo {name!r} is neither an image in this file nor an image file")
        roles[role] = Path(shutil.copyfile(path, into / f"{role}{path.suffix.lower()}"))
    return roles


def apply_refined(job: Job) -> None:
    """The result into the scene: a new material on the mesh, or a new Gaussian object/sequence."""
    if job.meta["kind"] == "mesh":
        obj = scene_io.find_target(job.meta["target"])
        result = read_glb(job.downloaded["glb"])
        uv_map = obj.data.uv_layers[result.base_color_uv or 0].name if obj.data.uv_layers else None
        applied = scene_io.apply_texture_result(obj, job.downloaded["glb"], job.downloaded["texture"],
                                                Path(job.meta["exported"]), uv_map, name=f"{obj.name} Orbitex refine")
        job.meta["applied"] = {"object": obj.name, "material": applied.material.name}
        job.message = f"material {applied.material.name!r} on UV map {applied.uv_map!r}"
        return
    frame, collections = placed_matrix(job.meta), placed_collections(job.meta)
    if "sequence" in job.downloaded:
        folder = job.work_dir / "results" / "sequence"
        with zipfile.ZipFile(job.downloaded["sequence"]) as archive:
            archive.extractall(folder)
        obj = import_gaussian_sequence(job.downloaded["frames_index"], folder, result_name(job.target), frame,
                                       collections)
        job.message = f"added {obj.name!r}: {len(obj.children)} frames from frame {bpy.context.scene.frame_start}"
    else:
        obj = import_gaussians(job.downloaded["gaussians"], result_name(job.target), frame, collections)
        job.message = f"added {obj.name!r}"
    job.meta["result_object"] = obj.name


def submit(asset: Asset, subjects: list[str], params: dict) -> tuple[Job, BackendClient | None]:
    """Check and export everything, then submit (the job's first step); SubmitError says why not."""
    obj = asset.obj
    work_dir = new_work_dir()
    try:
        inputs = subject_files(subjects, work_dir / "inputs")
        if asset.kind == "mesh":
            inputs["asset"] = scene_meshes.export_local_glb(obj, work_dir / "inputs" / "asset.glb", materials=True)
        else:
            inputs["asset"] = export_gaussians(obj, work_dir / "inputs" / "asset.ply")
        client = connect()  # after the checks above: bad input is refused without contacting the backend
    except SubmitError:  # nothing of a refused job stays behind
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    except (RuntimeError, ValueError, OSError) as exc:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise SubmitError(f"could not export {obj.name!r}: {exc}") from None
    # Gaussians: every result (a 4D one adds frames_index and the zipped sequence)
    fetch = ("glb", "texture", "report") if asset.kind == "mesh" else ()
    job = Job(type=JOB_TYPE, params=params, inputs=inputs, target=obj.name, work_dir=work_dir, fetch=fetch)
    job.meta["kind"] = asset.kind
    if asset.kind == "mesh":
        job.meta.update(target=scene_io.target_ref(obj), exported=str(inputs["asset"]))
    else:
        job.meta.update(placement(obj.matrix_world.copy(), obj, scene_meshes.home_collections(obj)))
    first_step(job, client, apply_refined)
    return job, client


class RefineOptions:
    """The job's options, shared by the operator and the Refine panel's scene settings."""

    inpainter: EnumProperty(name="Inpainter", items=INPAINTERS, default="opencv")
    frames: IntProperty(name="Frames", default=61, min=4, max=720, description="Views per orbit around the source")
    size: IntProperty(name="Size", default=512, min=32, max=2048, subtype="PIXEL", description="View size in pixels")
    source_view: StringProperty(name="Source View", default="auto",
                                description="'auto' (the view that looks most like the first photo) or a frame number")
    anchors: StringProperty(name="Anchors", default="20,90,180",
                            description="Stages of the progressive inpainting, in degrees from the source view")
    consistency: EnumProperty(name="Consistency", items=CONSISTENCY, default="none",
                              description="Multi-view consistency stage before the rebake / refit")


class ORBITEX_OT_refine_subject(RefineOptions, bpy.types.Operator):
    bl_idname = "orbitex.refine_subject"
    bl_label = "Refine from Subject"
    bl_description = ("Keep what the source view of the active textured mesh or Gaussians shows and repaint what it "
                      "never saw from photos of the subject, on the Orbitex backend; the result is a new material "
                      "or a new object, never over yours")
    bl_options = {"UNDO"}  # no REGISTER: a Redo-panel tweak must not submit (and wait for) another job

    subjects: CollectionProperty(type=OrbitexSubjectImage, name="Subject Photos",
                                 description="Image datablocks of this file (by name) or image file paths")

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and (obj.type == "MESH" or is_gaussian_object(obj))

    def params(self) -> dict:
        try:
            anchors = [float(a) for a in self.anchors.split(",") if a.strip()]
        except ValueError:
            raise SubmitError(f"anchors are comma-separated degrees such as 20,90,180, not {self.anchors!r}") from None
        return {"inpainter": self.inpainter, "frames": self.frames, "size": self.size,
                "source_view": self.source_view.strip() or "auto", "anchors": anchors, "consistency": self.consistency}

    def _submit(self, context) -> tuple[Job, BackendClient | None] | None:
        """Submit the job; None, with the reason reported, when it cannot start (the scene unchanged)."""
        try:
            return submit(find_asset(context.active_object), [s.name for s in self.subjects], self.params())
        except SubmitError as exc:
            self.report({"ERROR"}, str(exc))
            return None

    def invoke(self, context, event):
        """From the UI: submit and return at once; the session timer steps the job and applies it."""
        with session.ui_call():
            submitted = self._submit(context)
        if submitted is None:
            return {"CANCELLED"}
        job = session.track(*submitted, apply_refined)
        self.report({"INFO"}, f"Orbitex {JOB_TYPE} job submitted for {job.target!r}")
        return {"FINISHED"}

    def execute(self, context):
        """Scripts, background mode, tests: block until the result is in the scene."""
        submitted = self._submit(context)
        if submitted is None:
            return {"CANCELLED"}
        job, client = submitted
        run_blocking(job, client, apply_refined)
        session.track(job, client, apply_refined)  # listed in the Jobs panel
        if job.state != "done":
            self.report({"ERROR"}, f"Orbitex {JOB_TYPE} for {job.target!r} {job.state}: {job.message}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Orbitex: {job.message}")
        return {"FINISHED"}
