"""orbitex.texture_selected: texture every selected mesh from one reference image (Ink3D), one job
per object; the result lands on the object itself (new material in a new slot, old ones kept)."""
from __future__ import annotations

import json
from pathlib import Path

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from ..addon import cameras, scene_io
from .job_submit import SubmitError, connect
from ..addon.client import BackendClient
from .texture_jobs import UV_MODES, SubmitsPerObject, Submitted, submit_each

JOB_TYPE = "texture"
GENERATORS = [("projection", "Projection", "Project the reference image and fill the rest (no model weights)"),
              ("wan-vace", "Wan VACE", "Orbit video from the Wan2.1 VACE video model (weights needed, GPU)"),
              ("orbitpainter", "OrbitPainter", "Orbit video from the OrbitPainter model (weights needed, GPU)")]


def reference_image(image_path: str, image_name: str, into: Path) -> Path:
    """The reference image as a file in `into`: a file path, or an Image datablock written out."""
    if image_path.strip():
        path = Path(bpy.path.abspath(image_path.strip())).expanduser()
        if not path.is_file():
            raise ValueError(f"reference image {str(path)!r} does not exist")
        into.mkdir(parents=True, exist_ok=True)
        dest = into / f"reference{path.suffix.lower()}"
        dest.write_bytes(path.read_bytes())
        return dest
    if image_name:
        image = bpy.data.images.get(image_name)
        if image is None:
            raise ValueError(f"no image {image_name!r} in this file")
        return scene_io.image_file(image, into, "reference")
    raise ValueError("no reference image: choose an image file or an image in this file")


def reference_camera(camera_name: str, into: Path) -> Path:
    """transforms.json whose one frame is the camera the reference image was taken from."""
    obj = bpy.data.objects.get(camera_name)
    view = cameras.view_camera(obj, bpy.context.scene)
    into.mkdir(parents=True, exist_ok=True)
    path = into / cameras.TRANSFORMS
    path.write_text(json.dumps({"frames": [view.entry("reference")]}, indent=2))
    return path


class TextureOptions:
    """The texture job's options (a mixin: orbitex.texture_selected and orbitex.batch_collection)."""

    image_path: StringProperty(name="Image File", subtype="FILE_PATH",
                               description="Reference image file (used when set; else Image below)")
    image_name: StringProperty(name="Image", description="Reference image: an image in this file, by name")
    camera: StringProperty(name="Camera", description="Camera the reference image was taken from "
                                                      "(empty: a front view on -Y, the orbit's frame 0)")
    generator: EnumProperty(name="Generator", items=GENERATORS, default="projection")
    frames: IntProperty(name="Frames", default=61, min=1, max=241, description="Views along each orbit")
    size: IntProperty(name="Size", default=512, min=16, max=2048, subtype="PIXEL", description="Orbit view size")
    texture_size: IntProperty(name="Texture Size", default=2048, min=16, max=16384, subtype="PIXEL")
    voxel_res: IntProperty(name="Voxels", default=256, min=4, max=4096,
                           description="Surface voxels across the mesh for view selection")
    seed: IntProperty(name="Seed", default=0, min=0)
    uv_mode: EnumProperty(name="UV Map", items=UV_MODES, default="EXISTING")
    uv_map: StringProperty(name="UV Map Name", description="Existing UV map to paint on (empty: the active render one)")

    def texture_params(self) -> dict:
        # turntable=False: the preview is never downloaded here and costs about half of a small job
        return {"generator": self.generator, "frames": self.frames, "size": self.size, "seed": self.seed,
                "bake": {"texture_size": self.texture_size, "voxel_res": self.voxel_res}, "turntable": False}

    def texture_inputs(self, into: Path) -> dict[str, Path]:
        inputs = {"image": reference_image(self.image_path, self.image_name, into)}
        if self.camera:
            inputs["camera"] = reference_camera(self.camera, into)
        return inputs

    def texture_input_problem(self) -> str | None:
        """Why the shared inputs cannot work (checked before anything is exported or uploaded)."""
        if self.image_path.strip():
            if not Path(bpy.path.abspath(self.image_path.strip())).expanduser().is_file():
                return f"reference image {self.image_path!r} does not exist"
        elif not self.image_name:
            return "no reference image: choose an image file or an image in this file"
        elif bpy.data.images.get(self.image_name) is None:
            return f"no image {self.image_name!r} in this file"
        if self.camera:
            try:
                cameras.view_camera(bpy.data.objects.get(self.camera), bpy.context.scene)
            except cameras.CameraError as exc:
                return str(exc)
        return None


def submit_textures(options: TextureOptions, objects) -> tuple[Submitted, BackendClient | None]:  # type: ignore[no-untyped-def]
    """One texture job per object; the reference image and camera are checked first."""
    problem = options.texture_input_problem()
    if problem:
        raise SubmitError(problem)
    return submit_each(objects, JOB_TYPE, options.texture_params(), options.texture_inputs, options.uv_mode,
                       options.uv_map, connect())


class ORBITEX_OT_texture_selected(TextureOptions, SubmitsPerObject, bpy.types.Operator):
    bl_idname = "orbitex.texture_selected"
    bl_label = "Texture Selected"
    bl_description = ("Texture every selected mesh from a reference image on the Orbitex backend; each result "
                      "becomes a new material on the object itself (old materials are kept)")
    bl_options = {"UNDO"}  # no REGISTER: a Redo-panel tweak must not submit (and wait for) new jobs

    @classmethod
    def poll(cls, context):
        return any(o.type == "MESH" for o in context.selected_objects)

    def submit_jobs(self, context):
        objects = sorted((o for o in context.selected_objects if o.type == "MESH"), key=lambda o: o.name)
        return submit_textures(self, objects)
