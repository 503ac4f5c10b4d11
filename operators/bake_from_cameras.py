"""orbitex.bake_from_cameras: bake the selected meshes from posed images: the scene's cameras with
their background images, the scene's cameras with an image each found by name in a folder, or a
view-set folder on disk. The cameras become a view set (addon/cameras.py) in the uploaded GLB's
frame; the result lands on each object itself (new material in a new slot, old ones kept)."""
from __future__ import annotations

import shutil
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from ..addon import cameras, scene_io
from ..addon.cameras import CameraError
from .job_submit import SubmitError, connect, new_work_dir
from ..addon.client import BackendClient
from .texture_jobs import UV_MODES, SubmitsPerObject, Submitted, submit_each

JOB_TYPE = "bake"
SOURCES = [("CAMERAS", "Camera Backgrounds", "Scene cameras and the background image each one shows"),
           ("IMAGE_FOLDER", "Images by Camera Name", "Scene cameras and, per camera, the image named like it "
                                                     "in a folder (Camera.001 -> Camera.001.png)"),
           ("VIEW_SET", "View-Set Folder", "A folder with transforms.json and images (instant-ngp / nerfstudio)")]
CAMERA_SCOPES = [("ALL", "All Cameras", "Every camera in the scene"),
                 ("SELECTED", "Selected Cameras", "Only the selected cameras")]
VIEW_SET_FRAMES = [("AUTO", "Automatic", "The backend finds the frame: it renders the mesh through the cameras in both "
                                           "frames and keeps the one that matches the images (alpha, else colours), "
                                           "and refuses a view set whose cameras do not see the mesh"),
                   ("BLENDER", "Blender World", "Camera matrices are in this scene's world coordinates (Z up), "
                                                "as Blender add-ons write them"),
                   ("GLTF", "glTF (Y up)", "Camera matrices are in the Y-up frame of a glTF export of the scene, "
                                           "as Orbitex writes view sets")]
METHODS = [("mrf", "MRF", "Per-voxel view choice with smooth seams (Ink3D), then the texture fitted to the views"),
           ("greedy", "Greedy", "Best-facing view per voxel, then the texture fitted to the views"),
           ("average", "Average", "Confidence-weighted average of all views (no fit: the plain baseline)"),
           ("optimize", "Optimize", "The average, then the texture fitted to the views")]


def scene_cameras(context, scope: str) -> list[bpy.types.Object]:
    objs = context.scene.objects if scope == "ALL" else context.selected_objects
    return sorted((o for o in objs if o.type == "CAMERA"), key=lambda o: o.name)


def _background_image(obj: bpy.types.Object):  # type: ignore[no-untyped-def]
    for bg in obj.data.background_images:
        if bg.source == "IMAGE" and bg.image is not None:
            if (tuple(bg.offset) != (0.0, 0.0) or bg.rotation != 0.0 or bg.scale != 1.0
                    or bg.use_flip_x or bg.use_flip_y):
                raise CameraError(f"camera {obj.name!r}: its background image {bg.image.name!r} is offset, rotated, "
                                  "scaled or flipped; reset those so the image matches what the camera sees")
            return bg
    return None


def _image_for_camera(folder: Path, name: str) -> Path | None:
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.stem.lower() == name.lower() and path.suffix.lower() in scene_io.IMAGE_SUFFIXES:
            return path
    return None


def _image_size(path: Path) -> tuple[int, int]:
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        width, height = image.size
    finally:
        bpy.data.images.remove(image)
    if not width or not height:
        raise CameraError(f"{path}: not a readable image")
    return width, height


def camera_views(context, source: str, scope: str, image_folder: str, into: Path) -> Path:
    """A view-set folder in `into` from the scene's cameras and their images; its transforms.json."""
    scene = context.scene
    pa_x, pa_y = scene.render.pixel_aspect_x, scene.render.pixel_aspect_y
    objs = scene_cameras(context, scope)
    if not objs:
        raise CameraError("no cameras" + (" selected" if scope == "SELECTED" else " in the scene"))
    folder = Path(bpy.path.abspath(image_folder)).expanduser() if source == "IMAGE_FOLDER" else None
    if folder is not None and not folder.is_dir():
        raise CameraError(f"image folder {image_folder!r} does not exist")
    views, without = [], []
    staging = into / "camera_images"
    for obj in objs:
        camera = cameras.view_camera(obj, scene)
        if source == "CAMERAS":
            bg = _background_image(obj)
            if bg is None:
                without.append(obj.name)
                continue
            width, height = bg.image.size
            if not width or not height:
                raise CameraError(f"camera {obj.name!r}: its background image {bg.image.name!r} has no pixels")
            views.append((cameras.for_image(camera, width, height, bg.frame_method, pa_x, pa_y),
                          scene_io.image_file(bg.image, staging, cameras.safe_name(obj.name))))
        else:
            path = _image_for_camera(folder, obj.name)
            if path is None:
                without.append(obj.name)
                continue
            width, height = _image_size(path)
            views.append((cameras.matching_image(camera, width, height, f"image {path.name}"), path))
    if not views:
        where = "a background image" if source == "CAMERAS" else f"an image named after it in {folder}"
        raise CameraError(f"none of the cameras ({', '.join(without)}) has {where}")
    return cameras.write_view_set(into / "views", views)


def views_archive(context, source: str, scope: str, image_folder: str, views_folder: str, views_frame: str,
                  into: Path) -> Path:
    """The view set as the zip the backend takes."""
    if source == "VIEW_SET":
        folder = Path(bpy.path.abspath(views_folder)).expanduser()
        if not folder.is_dir():
            raise CameraError(f"view-set folder {views_folder!r} does not exist")
        meta = cameras.read_transforms(folder)
        moved = cameras.transforms_to_frame(meta) if views_frame == "BLENDER" else None
        return cameras.zip_view_set(folder, into / "views.zip", moved)
    transforms = camera_views(context, source, scope, image_folder, into)
    return cameras.zip_view_set(transforms.parent, into / "views.zip")


class BakeOptions:
    """The bake job's options (a mixin: orbitex.bake_from_cameras and orbitex.batch_collection)."""

    source: EnumProperty(name="Images", items=SOURCES, default="CAMERAS")
    camera_scope: EnumProperty(name="Cameras", items=CAMERA_SCOPES, default="ALL")
    image_folder: StringProperty(name="Image Folder", subtype="DIR_PATH",
                                 description="Folder with one image per camera, named like the camera")
    views_folder: StringProperty(name="View Set", subtype="DIR_PATH", description="Folder holding transforms.json")
    views_frame: EnumProperty(name="Coordinates", items=VIEW_SET_FRAMES, default="AUTO")
    method: EnumProperty(name="Method", items=METHODS, default="mrf")
    texture_size: IntProperty(name="Texture Size", default=2048, min=16, max=16384, subtype="PIXEL")
    voxel_res: IntProperty(name="Voxels", default=256, min=4, max=4096,
                           description="Surface voxels across the mesh for view selection")
    uv_mode: EnumProperty(name="UV Map", items=UV_MODES, default="EXISTING")
    uv_map: StringProperty(name="UV Map Name", description="Existing UV map to bake onto (empty: the active render one)")
    align: BoolProperty(name="Align Views", default=True,
                        description="Warp and colour-correct each image onto the surface before baking "
                                    "(images a pixel or two off the geometry, as from video models or hand-placed cameras)")

    def bake_params(self) -> dict:
        # cameras made here and Blender-world sets (converted here) are in the GLB's frame; AUTO asks the backend
        frame = "auto" if self.source == "VIEW_SET" and self.views_frame == "AUTO" else "gltf"
        return {"method": self.method, "texture_size": self.texture_size, "voxel_res": self.voxel_res,
                "align": self.align, "views_frame": frame}

    def bake_views(self, context, staging: Path) -> Path:
        """The view-set zip in `staging`; raises CameraError naming the camera, image or folder."""
        return views_archive(context, self.source, self.camera_scope, self.image_folder, self.views_folder,
                             self.views_frame, staging)


def submit_bakes(options: BakeOptions, context, objects) -> tuple[Submitted, BackendClient | None]:  # type: ignore[no-untyped-def]
    """One bake job per object from one view set, made (and checked) before the backend is
    contacted or anything exported."""
    staging = new_work_dir()
    try:
        archive = options.bake_views(context, staging)

        def inputs(into: Path) -> dict[str, Path]:
            into.mkdir(parents=True, exist_ok=True)
            return {"views": Path(shutil.copyfile(archive, into / archive.name))}

        return submit_each(objects, JOB_TYPE, options.bake_params(), inputs, options.uv_mode, options.uv_map,
                           connect())
    except (CameraError, ValueError, OSError) as exc:
        raise SubmitError(str(exc)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class ORBITEX_OT_bake_from_cameras(BakeOptions, SubmitsPerObject, bpy.types.Operator):
    bl_idname = "orbitex.bake_from_cameras"
    bl_label = "Bake from Cameras"
    bl_description = ("Bake the selected meshes from posed images (scene cameras and their images, or a view-set "
                      "folder) on the Orbitex backend; each result becomes a new material on the object itself")
    bl_options = {"UNDO"}  # no REGISTER: a Redo-panel tweak must not submit (and wait for) new jobs
    job_word, done_word = "bake", "baked"

    @classmethod
    def poll(cls, context):
        return any(o.type == "MESH" for o in context.selected_objects)

    def submit_jobs(self, context):
        objects = sorted((o for o in context.selected_objects if o.type == "MESH"), key=lambda o: o.name)
        return submit_bakes(self, context, objects)
