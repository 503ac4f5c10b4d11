"""The scene side of jobs: export what a job needs, bring its results in. bpy lives here."""
from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from .glb_read import GlbError, read_glb
from .uv_transfer import GLTF_FROM_BLENDER, MatchError, loop_uvs, match_corners

NEW_UV_MAP_NAME = "Orbitex UV"
MAX_UV_MAPS = 8  # Blender's limit per mesh
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".webp", ".tif", ".tiff", ".bmp")


@contextmanager
def only_selected(obj: bpy.types.Object) -> Iterator[None]:
    """`obj` alone selected and active for the block (for an operator that works on the
    selection); the user's selection and active object come back afterwards."""
    view_layer = bpy.context.view_layer
    selected = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    try:
        for o in selected:
            o.select_set(False)
        obj.select_set(True)
        view_layer.objects.active = obj
        yield
    finally:
        obj.select_set(False)
        for o in selected:
            o.select_set(True)
        view_layer.objects.active = active


def write_glb(obj: bpy.types.Object, path: Path, apply_modifiers: bool, texcoords: bool,
              materials: bool) -> Path:
    """Run Blender's glTF exporter on `obj` alone (normals always, no animation, cameras, lights
    or extras); the user's selection is left as it was."""
    with only_selected(obj):
        result = bpy.ops.export_scene.gltf(
            filepath=str(path), export_format="GLB", use_selection=True, export_apply=apply_modifiers,
            export_texcoords=texcoords, export_normals=True,
            export_materials="EXPORT" if materials else "NONE", export_image_format="AUTO",
            export_animations=False, export_skins=False, export_morph=False,
            export_cameras=False, export_lights=False, export_extras=False,
        )
    if "FINISHED" not in result or not path.is_file():
        raise RuntimeError(f"the glTF exporter did not write {path}")
    return path


def export_mesh_glb(obj: bpy.types.Object, path: Path, apply_modifiers: bool = True,
                    texcoords: bool = True) -> Path:
    """Write `obj` alone to a GLB with modifiers applied, UVs and normals, no materials.

    `apply_modifiers=False` writes the object's own mesh (a result's new UV map must fit it),
    `texcoords=False` leaves its UV maps out (the backend then makes one).
    The user's selection and active object are left as they were.
    """
    if obj is None or obj.type != "MESH":
        raise ValueError("the active object must be a mesh")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_glb(obj, path, apply_modifiers=apply_modifiers, texcoords=texcoords, materials=False)


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


# -- which object a job belongs to ------------------------------------------------------------
# Objects are tracked by `session_uid`: stable across renames and undo, never shared by a
# duplicate, and reading it leaves the user's object untouched. The name is kept to tell a
# renamed object from the one it was.

class TargetMissing(Exception):
    """The object a result belongs to is gone or renamed: the result is kept, not applied."""


def target_ref(obj: bpy.types.Object) -> dict:
    return {"uid": obj.session_uid, "name": obj.name}


def find_target(ref: dict, allow_renamed: bool = False) -> bpy.types.Object:
    """The object `ref` names. A rename is refused unless `allow_renamed` (the user's explicit
    Apply); another object that took the old name is never the target."""
    obj = next((o for o in bpy.data.objects if o.session_uid == ref["uid"]), None)
    if obj is None:
        raise TargetMissing(f"the object {ref['name']!r} was deleted (or the file reloaded) since the job was "
                            "submitted; the result is kept, see Open Result Folder")
    if obj.name != ref["name"] and not allow_renamed:
        raise TargetMissing(f"the object {ref['name']!r} was renamed to {obj.name!r} since the job was submitted; "
                            f"the result is kept: press Apply to put it on {obj.name!r}")
    if obj.type != "MESH":
        raise TargetMissing(f"{obj.name!r} is no longer a mesh object")
    return obj


# -- images and meshes the backend reads --------------------------------------------------------

def image_file(image: bpy.types.Image, dest_dir: Path, stem: str) -> Path:
    """A file holding `image`'s pixels: its own file when it is saved and unchanged, its packed
    bytes, or a PNG written from its pixels (generated or edited images)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    source = Path(bpy.path.abspath(image.filepath_raw or image.filepath)) if (image.filepath_raw or image.filepath) else None
    if image.source == "FILE" and image.packed_file is None and not image.is_dirty and source and source.is_file():
        dest = dest_dir / f"{stem}{source.suffix.lower()}"
        shutil.copyfile(source, dest)
        return dest
    if image.packed_file is not None and not image.is_dirty:
        suffix = source.suffix.lower() if source and source.suffix.lower() in IMAGE_SUFFIXES else ".png"
        dest = dest_dir / f"{stem}{suffix}"
        dest.write_bytes(bytes(image.packed_file.data))
        return dest
    # Image.save() would turn a generated image into a file image: write its pixels ourselves.
    width, height = image.size
    if width == 0 or height == 0 or len(image.pixels) == 0:
        raise ValueError(f"the image {image.name!r} has no pixels"
                         + (f" (its file {image.filepath!r} is missing)" if image.filepath else ""))
    rgba = np.empty(width * height * image.channels, dtype=np.float32)
    image.pixels.foreach_get(rgba)
    rgba = rgba.reshape(height, width, image.channels)[::-1]  # Blender's rows go bottom-up
    if image.channels < 4:
        rgba = np.concatenate([np.repeat(rgba[..., :1], 3, -1) if image.channels < 3 else rgba[..., :3],
                               np.ones((height, width, 1), np.float32)], axis=-1)
    if image.is_float:  # float buffers hold linear values: encode as sRGB like any PNG
        c = np.clip(rgba[..., :3], 0.0, 1.0)
        rgba[..., :3] = np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    dest = dest_dir / f"{stem}.png"
    write_png(dest, (np.clip(rgba, 0.0, 1.0) * 255 + 0.5).astype(np.uint8))
    return dest


def write_png(path: Path, rgba: np.ndarray) -> Path:
    """An 8-bit RGBA PNG from an (H, W, 4) uint8 array, top row first (standard library only)."""
    height, width = rgba.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgba.reshape(height, width * 4)], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))
    return path


def uv_map_index(obj: bpy.types.Object, name: str) -> int:
    """TEXCOORD_n of the UV map `name` in the GLB the exporter writes (it writes every UV map in order)."""
    index = obj.data.uv_layers.find(name)
    if index < 0:
        have = ", ".join(repr(u.name) for u in obj.data.uv_layers) or "none"
        raise ValueError(f"{obj.name!r} has no UV map {name!r} (it has {have})")
    return index


# -- applying a texture result ------------------------------------------------------------------

@dataclass
class AppliedTexture:
    material: bpy.types.Material
    image: bpy.types.Image
    uv_map: str
    note: str = ""


def _result_uvs(result) -> np.ndarray:  # type: ignore[no-untyped-def]
    index = result.base_color_uv if result.base_color_uv is not None else 0
    if index not in result.uv_sets:
        raise ValueError(f"the returned GLB's texture uses TEXCOORD_{index}, which its mesh does not have")
    return result.uv_sets[index]


def _check_existing_uvs(exported_glb: Path, result, index: int, uv_name: str) -> None:  # type: ignore[no-untyped-def]
    """The returned texture must live on the UV map we asked for: compare per face corner."""
    exported = read_glb(exported_glb)
    if index not in exported.uv_sets:
        raise ValueError(f"the uploaded mesh has no TEXCOORD_{index} for UV map {uv_name!r}")
    corners = match_corners(exported.corner_positions, result, "the uploaded mesh")
    returned = _result_uvs(result)[corners]
    for i, uvs in exported.uv_sets.items():
        if float(np.abs(uvs[exported.triangles] - returned).max(initial=0.0)) <= 1e-4:
            if i == index:
                return
            raise ValueError(f"the backend baked onto TEXCOORD_{i}, not TEXCOORD_{index} (UV map {uv_name!r}); "
                             "the result is kept but not applied")
    raise ValueError(f"the returned texture is on UVs that match none of the object's UV maps "
                     f"(expected {uv_name!r}); the result is kept but not applied")


def _new_uv_map(obj: bpy.types.Object, exported_glb: Path, result) -> tuple[np.ndarray, int]:  # type: ignore[no-untyped-def]
    """Per-loop UVs of the result's new UV map on `obj`'s own mesh (exported without modifiers)."""
    mesh = obj.data
    mesh.calc_loop_triangles()
    loops = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
    mesh.loop_triangles.foreach_get("loops", loops)
    verts = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
    mesh.loop_triangles.foreach_get("vertices", verts)
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
    mesh.vertices.foreach_get("co", co)
    # our corners in the result's frame: the uploaded file's node transform after the axis change
    to_file = read_glb(exported_glb).node_matrix @ GLTF_FROM_BLENDER
    points = co.reshape(-1, 3) @ to_file[:3, :3].T + to_file[:3, 3]
    corners = match_corners(points[verts].reshape(-1, 3, 3), result, f"{obj.name!r}")
    uv = _result_uvs(result)[corners]  # (T, 3, 2) glTF convention
    uv = np.stack([uv[..., 0], 1.0 - uv[..., 1]], axis=-1)
    return loop_uvs(loops.reshape(-1, 3), uv, len(mesh.loops))


def unique_uv_map_name(mesh: bpy.types.Mesh, base: str = NEW_UV_MAP_NAME) -> str:
    name, n = base, 1
    while mesh.uv_layers.get(name) is not None:
        name, n = f"{base}.{n:03d}", n + 1
    return name


def texture_material(name: str, image: bpy.types.Image, uv_map: str) -> bpy.types.Material:
    """Principled BSDF whose base colour is `image` read through the UV map `uv_map`."""
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    tex = nodes.new("ShaderNodeTexImage")
    tex.image, tex.location = image, (bsdf.location.x - 320, bsdf.location.y)
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map, uv.location = uv_map, (tex.location.x - 220, tex.location.y - 60)
    links.new(uv.outputs["UV"], tex.inputs["Vector"])
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Metallic"].default_value = 0.0
    bsdf.inputs["Roughness"].default_value = 0.8
    return material


def apply_texture_result(obj: bpy.types.Object, glb_path: Path, texture_path: Path, exported_glb: Path,
                         uv_map: str | None, name: str) -> AppliedTexture:
    """Put a texture result on `obj` without losing anything: a new packed image, a new material in
    a new slot made active and given to every face, old materials kept; `uv_map=None` means the
    result brings its own UV map, added as a new layer. Everything that can fail is checked
    before the scene is touched; no undo step is pushed here (the caller's one step covers it)."""
    mesh = obj.data
    if mesh.is_editmode:  # edit-mode data would overwrite ours when the user leaves it
        raise ValueError(f"{obj.name!r} is in Edit Mode; leave Edit Mode and press Apply (the result is kept)")
    if mesh.library is not None or obj.library is not None:
        raise ValueError(f"{obj.name!r} is linked from another file and cannot be changed here")
    try:
        result = read_glb(glb_path)
        if uv_map is not None:
            _check_existing_uvs(exported_glb, result, uv_map_index(obj, uv_map), uv_map)
            per_loop, conflicts = None, 0
        else:
            if len(mesh.uv_layers) >= MAX_UV_MAPS:
                raise ValueError(f"{obj.name!r} already has {MAX_UV_MAPS} UV maps, Blender's limit")
            per_loop, conflicts = _new_uv_map(obj, exported_glb, result)
    except (GlbError, MatchError) as exc:
        raise ValueError(str(exc)) from None
    image = load_packed_image(texture_path, name)
    if per_loop is not None:
        uv_map = unique_uv_map_name(mesh)
        layer = mesh.uv_layers.new(name=uv_map, do_init=False)
        layer.data.foreach_set("uv", per_loop.astype(np.float32).ravel())
    material = texture_material(name, image, uv_map)
    mesh.materials.append(material)
    slot = len(obj.material_slots) - 1
    if obj.material_slots[slot].material != material:  # an object-linked slot
        obj.material_slots[slot].material = material
    mesh.polygons.foreach_set("material_index", [slot] * len(mesh.polygons))
    mesh.update()
    obj.active_material_index = slot
    note = (f"{conflicts} face corners sat on a UV seam inside a polygon and took one side's UVs"
            if conflicts else "")
    return AppliedTexture(material, image, uv_map, note)
