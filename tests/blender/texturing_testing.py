"""Helpers for the texture / bake / batch / apply tests (the local backend: conftest's `session`):
small meshes with and without UVs and an old material, selection, a reference image, a snapshot
of everything applying a result may touch, and a minimal GLB writer for synthetic results."""
from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from pathlib import Path

import bpy
import numpy as np


# Small sizes: the suite runs on a 2-core CPU.
TEXTURE_PARAMS = {"frames": 4, "size": 48, "texture_size": 128, "voxel_res": 32}
BAKE_PARAMS = {"texture_size": 256, "voxel_res": 64}


def tick_until(session, done: Callable[[], bool], timeout: float = 240.0) -> None:  # type: ignore[no-untyped-def]
    """Call the timer body by hand (timers never fire under the bpy module) until `done()`."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, [(j.target, j.state, j.stage, j.message) for j in session.board.jobs()]
        session.tick()
        time.sleep(0.1)


def reference_png(path: Path, size: int = 64) -> Path:
    """A subject on a transparent background: a disc, red on its left half, blue on its right."""
    yy, xx = np.mgrid[0:size, 0:size]
    inside = (xx - size / 2 + 0.5) ** 2 + (yy - size / 2 + 0.5) ** 2 < (0.4 * size) ** 2
    rgba = np.zeros((size, size, 4), np.float32)
    rgba[..., 0] = np.where(xx < size / 2, 0.9, 0.1)
    rgba[..., 1] = 0.2
    rgba[..., 2] = np.where(xx < size / 2, 0.1, 0.9)
    rgba[..., 3] = inside
    return save_png(path, rgba)


def save_png(path: Path, rgba: np.ndarray) -> Path:
    """Write (H, W, 4) floats in [0, 1] (top row first) as an 8-bit PNG."""
    from orbitex.addon.scene_io import write_png

    return write_png(path, (np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8))


def new_mesh(name: str, kind: str = "uv_sphere", uvs: bool = True, old_material: str | None = None,
             location=(0.0, 0.0, 0.0)) -> bpy.types.Object:  # type: ignore[no-untyped-def]
    """A small mesh object, selected and active: "uv_sphere" (quads and triangles) or "ico" (triangles)."""
    if kind == "uv_sphere":
        bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8, radius=1.0, location=location)
    else:
        bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=2, radius=1.0, location=location)
    obj = bpy.context.active_object
    obj.name = obj.data.name = name
    if not uvs:
        while obj.data.uv_layers:
            obj.data.uv_layers.remove(obj.data.uv_layers[0])
    if old_material:
        obj.data.materials.append(bpy.data.materials.get(old_material) or bpy.data.materials.new(old_material))
    return obj


def select_only(*objs: bpy.types.Object) -> None:
    """Select exactly `objs` (the first one active), as a user would before running an operator."""
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    for o in objs:
        o.select_set(True)
    bpy.context.view_layer.objects.active = objs[0]


def state(obj: bpy.types.Object) -> dict:
    """Everything applying a result may touch on `obj` and in the file."""
    mesh = obj.data
    indices = np.empty(len(mesh.polygons), dtype=np.int32)
    mesh.polygons.foreach_get("material_index", indices)
    return {
        "materials": sorted(m.name for m in bpy.data.materials),
        "images": sorted(i.name for i in bpy.data.images),
        "slots": [s.material.name if s.material else None for s in obj.material_slots],
        "active_slot": obj.active_material_index,
        "uv_maps": [u.name for u in mesh.uv_layers],
        "material_indices": indices.tolist(),
        "vertices": len(mesh.vertices),
        "polygons": len(mesh.polygons),
        "matrix": [list(row) for row in obj.matrix_world],
    }


def object_state(obj: bpy.types.Object) -> dict:
    """`state` without the file-wide lists (for objects that must not change while others do)."""
    return {k: v for k, v in state(obj).items() if k not in ("materials", "images")}


def loop_uvs(obj: bpy.types.Object, uv_map: str) -> np.ndarray:
    layer = obj.data.uv_layers[uv_map]
    out = np.empty(len(layer.data) * 2, dtype=np.float64)
    layer.data.foreach_get("uv", out)
    return out.reshape(-1, 2)


def texture_pixels(image: bpy.types.Image) -> np.ndarray:
    """(H, W, 4) floats, row 0 at the bottom (Blender's order, like UV v)."""
    w, h = image.size
    px = np.empty(w * h * 4, dtype=np.float32)
    image.pixels.foreach_get(px)
    return px.reshape(h, w, 4)


def face_colours(obj: bpy.types.Object, uv_map: str, image: bpy.types.Image) -> np.ndarray:
    """The texture's colour at each polygon's UV centre: (P, 3)."""
    uvs, pixels = loop_uvs(obj, uv_map), texture_pixels(image)
    h, w = pixels.shape[:2]
    out = []
    for poly in obj.data.polygons:
        u, v = uvs[list(poly.loop_indices)].mean(axis=0)
        out.append(pixels[min(h - 1, max(0, int(v * h))), min(w - 1, max(0, int(u * w))), :3])
    return np.array(out)


def write_glb(path: Path, positions: np.ndarray, triangles: np.ndarray, uv_sets: dict[int, np.ndarray],
              base_color_uv: int = 0, node_matrix: np.ndarray | None = None) -> Path:
    """A minimal GLB: one node, one triangle primitive, float attributes, uint32 indices, one
    material whose base-colour texture reads TEXCOORD_`base_color_uv`."""
    blobs: list[bytes] = []
    views, accessors = [], []

    def add(array: np.ndarray, kind: str, component: int, target: int) -> int:
        data = np.ascontiguousarray(array).tobytes()
        offset = sum(len(b) for b in blobs)
        blobs.append(data + b"\0" * (-len(data) % 4))
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data), "target": target})
        acc = {"bufferView": len(views) - 1, "componentType": component, "count": len(array), "type": kind}
        if kind == "VEC3":
            acc["min"], acc["max"] = array.min(0).tolist(), array.max(0).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    attributes = {"POSITION": add(positions.astype(np.float32), "VEC3", 5126, 34962)}
    for i, uv in uv_sets.items():
        attributes[f"TEXCOORD_{i}"] = add(uv.astype(np.float32), "VEC2", 5126, 34962)
    indices = add(triangles.astype(np.uint32).ravel(), "SCALAR", 5125, 34963)
    node = {"mesh": 0}
    if node_matrix is not None:
        node["matrix"] = np.asarray(node_matrix, dtype=np.float64).T.ravel().tolist()  # column-major
    binary = b"".join(blobs)
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [node],
           "meshes": [{"primitives": [{"attributes": attributes, "indices": indices, "material": 0}]}],
           "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0, "texCoord": base_color_uv}}}],
           "textures": [{"source": 0}], "images": [{"uri": "texture.png"}],
           "buffers": [{"byteLength": len(binary)}], "bufferViews": views, "accessors": accessors}
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    body = (struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary)
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body)
    return path


class _OperatorStandin:
    """`self` for an operator's invoke() outside Blender's event loop: the operator's properties
    (registered defaults + overrides), its methods bound to this object, reports collected."""

    def __init__(self, cls: type, values: dict) -> None:
        self.__dict__.update(values)
        self._cls, self.reports = cls, []

    def report(self, kind: set, message: str) -> None:
        self.reports.append((next(iter(kind)), message))

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attr = getattr(self._cls, name)
        return attr.__get__(self, type(self)) if callable(attr) and not isinstance(attr, type) else attr


def invoke(op_cls: type, context=None, **props):  # type: ignore[no-untyped-def]
    """Run `op_cls.invoke()` as a sidebar button does. Under the bpy module
    bpy.ops.x("INVOKE_DEFAULT") runs execute(), so the invoke() body is called directly.
    Returns (result set, reports)."""
    module, name = op_cls.bl_idname.split(".")
    rna = getattr(getattr(bpy.ops, module), name).get_rna_type()
    # collection properties have no default: they start empty
    values = {p.identifier: getattr(p, "default", []) for p in rna.properties if p.identifier != "rna_type"}
    unknown = set(props) - set(values)
    assert not unknown, f"{op_cls.bl_idname} has no properties {unknown}"
    values.update(props)
    standin = _OperatorStandin(op_cls, values)
    result = op_cls.invoke(standin, context or bpy.context, None)
    return result, standin.reports


class RecordingLayout:
    """Stands in for bpy.types.UILayout (bpy as a module draws no UI): records every call and
    refuses what the real one would (unknown functions, keywords, icons, operators, operator
    properties)."""

    UI = bpy.types.UILayout.bl_rna.functions
    ICONS = set(UI["label"].parameters["icon"].enum_items.keys())

    def __init__(self, log: list, depth: int = 0) -> None:
        self._log, self._depth = log, depth
        self.alert = False
        self.enabled = True

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        if name not in self.UI:
            raise AttributeError(f"UILayout has no function {name!r}")
        params = {p.identifier for p in self.UI[name].parameters}

        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            unknown = set(kwargs) - params
            assert not unknown, f"UILayout.{name}() has no parameter(s) {unknown}"
            if "icon" in kwargs:
                assert kwargs["icon"] in self.ICONS, f"unknown icon {kwargs['icon']!r}"
            if name in ("prop", "prop_search", "template_ID"):
                data, prop = args[0], args[1]
                assert prop in data.bl_rna.properties, f"{type(data).__name__} has no property {prop!r}"
            self._log.append((self._depth, name, args, kwargs, self.alert))
            if name == "operator":
                return OperatorRecord(args[0])
            if name in ("row", "column", "box", "split", "column_flow", "grid_flow"):
                return RecordingLayout(self._log, self._depth + 1)
            return None

        return call


class OperatorRecord:
    """What layout.operator() returns: only the operator's own properties can be set."""

    def __init__(self, idname: str) -> None:
        module, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, module), name), f"no operator {idname}"
        rna = getattr(getattr(bpy.ops, module), name).get_rna_type()
        object.__setattr__(self, "_props", {p.identifier for p in rna.properties})
        object.__setattr__(self, "idname", idname)
        object.__setattr__(self, "values", {})

    def __setattr__(self, key: str, value) -> None:  # type: ignore[no-untyped-def]
        assert key in self._props, f"{self.idname} has no property {key!r}"
        self.values[key] = value


def draw_panel(panel_cls: type, width: int = 300) -> list:
    """Run a panel's draw() against a RecordingLayout with the real context; the call log."""
    from types import SimpleNamespace

    log: list = []
    panel = SimpleNamespace(layout=RecordingLayout(log))
    context = SimpleNamespace(region=SimpleNamespace(width=width), active_object=bpy.context.active_object,
                              selected_objects=bpy.context.selected_objects, scene=bpy.context.scene)
    panel_cls.draw(panel, context)
    return log
