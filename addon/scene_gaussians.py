"""3D Gaussians in the scene: a 3DGS PLY comes in as a point-cloud object with a preview.

The object carries every property of the file's vertex element as a float point attribute with
the file's own name and value (x y z become the point positions), so nothing is lost or altered:
view-dependent colour (f_rest_*) and rotations stay valid exactly as written. The PLY is in the
frame of the file it was made from (glTF, +Y up); Blender's glTF importer maps that frame to
Blender's by a +90 degree turn about X, (x, y, z) -> (x, -z, y), and so does this importer, as
part of the object's transform rather than by rewriting the attributes.

The preview is a geometry-nodes modifier that puts an ico sphere on every point, scaled per axis
by exp(scale_i) times a Size (in standard deviations) and turned by the normalized rot quaternion
(w, x, y, z), so the ellipsoids read correctly from any angle; a material shows the SH DC colour
(0.5 + C0 * f_dc, an sRGB value, linearized) at opacity sigmoid(opacity), dithered so the result
does not depend on drawing order.
"""
from __future__ import annotations

import math
from pathlib import Path

import bpy
from mathutils import Matrix

import json

import numpy as np

from .ply_format import C0, GaussianPly, PlyError, read_gaussians, write_gaussians
from .scene_io import only_selected

# glTF (+Y up) -> Blender (+Z up), as Blender's glTF importer converts: (x, y, z) -> (x, -z, y)
Y_UP_TO_Z_UP = Matrix.Rotation(math.pi / 2, 4, "X")
PREVIEW_GROUP = "Orbitex Gaussian Preview"
PREVIEW_MATERIAL = "Orbitex Gaussian Preview"
PREVIEW_MODIFIER = "Gaussian Preview"
PREVIEW_VERSION = 2
COLOR_ATTRIBUTE = "orbitex_preview_color"  # written by the preview on its instances (evaluated only)
ALPHA_ATTRIBUTE = "orbitex_preview_alpha"
DEFAULT_SIZE = 2.0  # ellipsoid radius in standard deviations: about where an opaque splat fades out


def import_gaussians(path: str | Path, name: str, frame: Matrix | None = None,
                     collections: list[bpy.types.Collection] | None = None) -> bpy.types.Object:
    """A new point-cloud object holding the Gaussians of the 3DGS PLY `path`, with the preview.

    `frame` maps the file's coordinates to the world and becomes the object's matrix: by default
    Y_UP_TO_Z_UP (a glTF-frame file at the world origin); for Gaussians made from an object's
    upload, source.matrix_world @ Y_UP_TO_Z_UP. Raises PlyError (nothing is added) for a file that
    is not a readable 3DGS PLY.
    """
    gaussians = read_gaussians(path)  # all checks happen before anything is created
    mesh = bpy.data.meshes.new(name)
    obj = None
    try:
        _fill_mesh(mesh, gaussians)
        obj = bpy.data.objects.new(name, mesh)
        _convert_to_point_cloud(obj)
        bpy.data.meshes.remove(mesh)  # the object now holds a point cloud; the helper mesh goes
        mesh = None
        obj.matrix_world = frame if frame is not None else Y_UP_TO_Z_UP
        for collection in collections or [bpy.context.scene.collection]:
            if obj.name not in collection.objects:
                collection.objects.link(obj)
        if collections and bpy.context.scene.collection not in collections:
            bpy.context.scene.collection.objects.unlink(obj)
        obj["orbitex_gaussians"] = len(gaussians)
        obj["orbitex_sh_degree"] = gaussians.sh_degree
        obj["orbitex_source"] = Path(path).name
        add_preview(obj)
    except BaseException:
        if obj is not None:
            data = obj.data
            bpy.data.objects.remove(obj)
            if isinstance(data, bpy.types.PointCloud) and data.users == 0:
                bpy.data.pointclouds.remove(data)
        if mesh is not None:
            bpy.data.meshes.remove(mesh)
        raise
    return obj


def is_gaussian_object(obj: bpy.types.Object | None) -> bool:
    """A point cloud carrying the 3DGS attributes (as import_gaussians makes it)."""
    if obj is None or obj.type != "POINTCLOUD":
        return False
    names = set(obj.data.attributes.keys())
    return {"f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "rot_0"} <= names


def export_gaussians(obj: bpy.types.Object, path: str | Path) -> Path:
    """The Gaussians of a point-cloud object as a 3DGS PLY in the object's own frame (the frame of the
    file it was imported from: its matrix maps that frame to the world)."""
    if not is_gaussian_object(obj):
        raise PlyError(f"{obj.name!r} is not a Gaussian point cloud (no 3DGS attributes)")
    cloud = obj.data
    count = len(cloud.points)
    if count == 0:
        raise PlyError(f"{obj.name!r} holds no Gaussians")
    positions = np.empty(count * 3, dtype=np.float32)
    cloud.attributes["position"].data.foreach_get("vector", positions)
    columns: dict[str, np.ndarray] = {a: positions.reshape(-1, 3)[:, i] for i, a in enumerate("xyz")}
    for attribute in cloud.attributes:
        if attribute.data_type == "FLOAT" and attribute.domain == "POINT" and not attribute.name.startswith("."):
            values = np.empty(count, dtype=np.float32)
            attribute.data.foreach_get("value", values)
            columns[attribute.name] = values
    return write_gaussians(path, columns)


def import_gaussian_sequence(index_path: str | Path, folder: str | Path, name: str, frame: Matrix | None = None,
                             collections: list[bpy.types.Collection] | None = None,
                             start_frame: int | None = None) -> bpy.types.Object:
    """A 4D Gaussian result: an empty `name` holding one Gaussian point cloud per time of the
    sequence index (frames.json: {"frames": [{"file", "time"}, ...]}), each visible on its own
    timeline frame only (keyed visibility, from the scene's start frame on), so scrubbing the
    timeline plays the sequence. Every file is read before anything is created."""
    index = json.loads(Path(index_path).read_text())
    entries = index.get("frames") if isinstance(index, dict) else None
    if not entries:
        raise PlyError(f"{Path(index_path).name}: the sequence index lists no frames")
    files = [Path(folder) / Path(str(e["file"])).name for e in entries]
    for f in files:
        read_gaussians(f)  # a missing or broken frame fails before the scene changes
    start = bpy.context.scene.frame_start if start_frame is None else start_frame
    parent = bpy.data.objects.new(name, None)
    children: list[bpy.types.Object] = []
    try:
        for collection in collections or [bpy.context.scene.collection]:
            collection.objects.link(parent)
        parent.matrix_world = frame if frame is not None else Y_UP_TO_Z_UP
        parent["orbitex_sequence_times"] = [float(e.get("time", i)) for i, e in enumerate(entries)]
        for i, f in enumerate(files):
            child = import_gaussians(f, f"{name} {i:03d}", Matrix.Identity(4), collections)
            children.append(child)
            child.parent = parent
            child["orbitex_sequence_frame"] = i
            for k in range(len(files)):
                child.hide_viewport = child.hide_render = k != i
                child.keyframe_insert("hide_viewport", frame=start + k)
                child.keyframe_insert("hide_render", frame=start + k)
            child.hide_viewport = child.hide_render = (bpy.context.scene.frame_current - start) != i
    except BaseException:
        for child in children:
            data = child.data
            bpy.data.objects.remove(child)
            if data is not None and data.users == 0:
                bpy.data.pointclouds.remove(data)
        bpy.data.objects.remove(parent)
        raise
    return parent


def _fill_mesh(mesh: bpy.types.Mesh, gaussians: GaussianPly) -> None:
    """Vertices at the Gaussian centres; every other property as a float point attribute."""
    mesh.vertices.add(len(gaussians))
    mesh.vertices.foreach_set("co", gaussians.positions.ravel())
    for name in gaussians.names:
        if name in ("x", "y", "z"):
            continue
        attribute = mesh.attributes.new(name, "FLOAT", "POINT")
        attribute.data.foreach_set("value", gaussians.columns[name])
    mesh.update()


def _convert_to_point_cloud(obj: bpy.types.Object) -> None:
    """Convert the vertex-only mesh object to a point cloud (attributes carried over) with
    Blender's Convert operator, on `obj` alone; the user's selection and active object come back.
    The object is linked to the scene collection (always in the view layer) for the call."""
    bpy.context.scene.collection.objects.link(obj)
    with only_selected(obj):
        if not bpy.ops.object.convert.poll():
            raise RuntimeError("Blender refused to convert the Gaussians to a point cloud here")
        result = bpy.ops.object.convert(target="POINTCLOUD")
    if "FINISHED" not in result or obj.type != "POINTCLOUD":
        raise RuntimeError(f"converting {obj.name!r} to a point cloud failed ({result})")
    selection = obj.data.attributes.get(".select_vert")  # edit-mode state, not a Gaussian property
    if selection is not None:
        obj.data.attributes.remove(selection)


# ------------------------------------------------------------------------------------- preview

def add_preview(obj: bpy.types.Object, size: float = DEFAULT_SIZE) -> bpy.types.NodesModifier:
    modifier = obj.modifiers.new(PREVIEW_MODIFIER, "NODES")
    modifier.node_group = preview_node_group()
    socket = next(s for s in modifier.node_group.interface.items_tree
                  if getattr(s, "in_out", "") == "INPUT" and s.name == "Size")
    modifier[socket.identifier] = float(size)
    return modifier


def _tagged(collection, name: str):
    """The datablock called `name` (or name.001 ...) that this module made at PREVIEW_VERSION."""
    return next((d for d in collection if d.name.split(".")[0] == name
                 and d.get("orbitex_preview_version") == PREVIEW_VERSION), None)


def preview_material() -> bpy.types.Material:
    material = _tagged(bpy.data.materials, PREVIEW_MATERIAL)
    if material is not None:
        return material
    material = bpy.data.materials.new(PREVIEW_MATERIAL)
    material["orbitex_preview_version"] = PREVIEW_VERSION
    material.use_nodes = True
    material.surface_render_method = "DITHERED"  # order-independent: the same from every angle
    material.use_transparent_shadow = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    color = nodes.new("ShaderNodeAttribute")
    color.attribute_type, color.attribute_name = "INSTANCER", COLOR_ATTRIBUTE
    alpha = nodes.new("ShaderNodeAttribute")
    alpha.attribute_type, alpha.attribute_name = "INSTANCER", ALPHA_ATTRIBUTE
    emission = nodes.new("ShaderNodeEmission")  # splat colours are radiance: no scene lighting
    transparent = nodes.new("ShaderNodeBsdfTransparent")
    mix = nodes.new("ShaderNodeMixShader")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(color.outputs["Color"], emission.inputs["Color"])
    links.new(alpha.outputs["Fac"], mix.inputs["Fac"])
    links.new(transparent.outputs["BSDF"], mix.inputs[1])
    links.new(emission.outputs["Emission"], mix.inputs[2])
    links.new(mix.outputs["Shader"], output.inputs["Surface"])
    for i, node in enumerate((color, alpha, emission, transparent, mix, output)):
        node.location = (200 * i, 0)
    return material


class _Builder:
    """Small helper to lay out a node tree in code."""

    def __init__(self, tree) -> None:
        self.tree = tree
        self.column = 0

    def node(self, kind: str, **settings):
        node = self.tree.nodes.new(kind)
        for key, value in settings.items():
            setattr(node, key, value)
        node.location = (180 * self.column, -120 * (len(self.tree.nodes) % 12))
        self.column += 1
        return node

    def link(self, out, into) -> None:
        self.tree.links.new(out, into)

    def math(self, operation: str, a, b=None, c=None, clamp: bool = False):
        node = self.node("ShaderNodeMath", operation=operation, use_clamp=clamp)
        for i, value in enumerate((a, b, c)):
            if value is None:
                continue
            if isinstance(value, (int, float)):
                node.inputs[i].default_value = float(value)
            else:
                self.link(value, node.inputs[i])
        return node.outputs[0]

    def attribute(self, name: str):
        node = self.node("GeometryNodeInputNamedAttribute", data_type="FLOAT")
        node.inputs["Name"].default_value = name
        return node.outputs["Attribute"]


def _srgb_to_linear(b: _Builder, v):
    """The sRGB decoding curve on a float output (3DGS colours are sRGB display values)."""
    low = b.math("DIVIDE", v, 12.92)
    high = b.math("POWER", b.math("DIVIDE", b.math("ADD", v, 0.055), 1.055), 2.4)
    is_low = b.math("LESS_THAN", v, 0.04045)
    return b.math("ADD", b.math("MULTIPLY", low, is_low), b.math("MULTIPLY", high, b.math("SUBTRACT", 1.0, is_low)))


def preview_node_group() -> bpy.types.GeometryNodeTree:
    group = _tagged(bpy.data.node_groups, PREVIEW_GROUP)
    if group is not None:
        return group
    group = bpy.data.node_groups.new(PREVIEW_GROUP, "GeometryNodeTree")
    group["orbitex_preview_version"] = PREVIEW_VERSION
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    size = group.interface.new_socket("Size", in_out="INPUT", socket_type="NodeSocketFloat")
    size.default_value, size.min_value, size.max_value = DEFAULT_SIZE, 0.0, 10.0
    size.description = "Ellipsoid radius in standard deviations of each Gaussian"
    detail = group.interface.new_socket("Detail", in_out="INPUT", socket_type="NodeSocketInt")
    detail.default_value, detail.min_value, detail.max_value = 2, 1, 5
    detail.description = "Subdivisions of each ellipsoid's ico sphere (lower it for millions of Gaussians)"
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    b = _Builder(group)
    group_in = b.node("NodeGroupInput")
    group_out = b.node("NodeGroupOutput")

    # colour (linear) and opacity, stored on the points: instancing hands them to the instances
    channels = [_srgb_to_linear(b, b.math("MULTIPLY_ADD", b.attribute(f"f_dc_{i}"), C0, 0.5, clamp=True))
                for i in range(3)]
    combine = b.node("ShaderNodeCombineXYZ")
    for i, channel in enumerate(channels):
        b.link(channel, combine.inputs[i])
    store_color = b.node("GeometryNodeStoreNamedAttribute", data_type="FLOAT_COLOR", domain="POINT")
    store_color.inputs["Name"].default_value = COLOR_ATTRIBUTE
    b.link(group_in.outputs["Geometry"], store_color.inputs["Geometry"])
    b.link(combine.outputs["Vector"], store_color.inputs["Value"])
    sigmoid = b.math("DIVIDE", 1.0, b.math("ADD", 1.0, b.math("EXPONENT", b.math("MULTIPLY", b.attribute("opacity"), -1.0))))
    store_alpha = b.node("GeometryNodeStoreNamedAttribute", data_type="FLOAT", domain="POINT")
    store_alpha.inputs["Name"].default_value = ALPHA_ATTRIBUTE
    b.link(store_color.outputs["Geometry"], store_alpha.inputs["Geometry"])
    b.link(sigmoid, store_alpha.inputs["Value"])

    # ellipsoid: per-axis exp(scale) * Size, turned by the normalized quaternion (w, x, y, z)
    scale = b.node("ShaderNodeCombineXYZ")
    for i in range(3):
        b.link(b.math("EXPONENT", b.attribute(f"scale_{i}")), scale.inputs[i])
    sized = b.node("ShaderNodeVectorMath", operation="SCALE")
    b.link(scale.outputs["Vector"], sized.inputs[0])
    b.link(group_in.outputs["Size"], sized.inputs["Scale"])
    quat = [b.attribute(f"rot_{i}") for i in range(4)]
    squares = [b.math("MULTIPLY", q, q) for q in quat]
    length = b.math("SQRT", b.math("ADD", b.math("ADD", squares[0], squares[1]), b.math("ADD", squares[2], squares[3])))
    rotation = b.node("FunctionNodeQuaternionToRotation")
    for q, socket in zip(quat, "WXYZ"):
        b.link(b.math("DIVIDE", q, length), rotation.inputs[socket])

    sphere = b.node("GeometryNodeMeshIcoSphere")
    sphere.inputs["Radius"].default_value = 1.0
    b.link(group_in.outputs["Detail"], sphere.inputs["Subdivisions"])
    set_material = b.node("GeometryNodeSetMaterial")
    set_material.inputs["Material"].default_value = preview_material()
    b.link(sphere.outputs["Mesh"], set_material.inputs["Geometry"])
    instance = b.node("GeometryNodeInstanceOnPoints")
    b.link(store_alpha.outputs["Geometry"], instance.inputs["Points"])
    b.link(set_material.outputs["Geometry"], instance.inputs["Instance"])
    b.link(rotation.outputs["Rotation"], instance.inputs["Rotation"])
    b.link(sized.outputs["Vector"], instance.inputs["Scale"])
    b.link(instance.outputs["Instances"], group_out.inputs["Geometry"])
    group_out.location = (180 * (b.column + 1), 0)
    return group
