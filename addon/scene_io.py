"""The scene side of jobs: export what a job needs, bring its results in. bpy lives here."""
from __future__ import annotations

from pathlib import Path

import bpy


def export_mesh_glb(obj: bpy.types.Object, path: Path) -> Path:
    """Write `obj` alone to a GLB with modifiers applied, UVs and normals, no materials.

    The exporter only writes the selection, so the selection is narrowed to `obj` for the call
    and restored afterwards: the user's scene is left as it was.
    """
    if obj is None or obj.type != "MESH":
        raise ValueError("the active object must be a mesh")
    path.parent.mkdir(parents=True, exist_ok=True)
    view_layer = bpy.context.view_layer
    selected = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    try:
        for o in selected:
            o.select_set(False)
        obj.select_set(True)
        view_layer.objects.active = obj
        result = bpy.ops.export_scene.gltf(
            filepath=str(path), export_format="GLB", use_selection=True, export_apply=True,
            export_texcoords=True, export_normals=True, export_materials="NONE",
            export_animations=False, export_skins=False, export_morph=False,
            export_cameras=False, export_lights=False, export_extras=False,
        )
    finally:
        obj.select_set(False)
        for o in selected:
            o.select_set(True)
        view_layer.objects.active = active
    if "FINISHED" not in result or not path.is_file():
        raise RuntimeError(f"the glTF exporter did not write {path}")
    return path


def load_packed_image(path: Path, name: str) -> bpy.types.Image:
    """A new image datablock holding the file's pixels, packed into the .blend, called `name`."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        image.name = name
        image.pack()
    except Exception:
        bpy.data.images.remove(image)
        raise
    return image


def push_undo(message: str) -> None:
    """One undo step for a result applied outside an operator (from the job timer)."""
    if bpy.ops.ed.undo_push.poll():
        bpy.ops.ed.undo_push(message=message)
