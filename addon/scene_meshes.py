"""Objects a job uploads in their own frame, and meshes that come back beside them.

Jobs whose result is a new object (Gaussians, completed scans) send the source in its object
frame: the evaluated mesh (modifiers applied) written without the object's transform, so the
result comes back in that same frame and the new object simply takes the source's world matrix.
Files follow glTF's +Y up: GLBs are written by Blender's glTF exporter, which turns Blender's
(x, y, z) into (x, z, -y); point scans (PLY) are written with the same turn; results are turned
back with (x, y, z) -> (x, -z, y), the mapping of Blender's glTF importer.
"""
from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from .ply_format import read_triangles, write_points
from .scene_io import write_glb


def blender_to_gltf(points: np.ndarray) -> np.ndarray:
    """Blender (+Z up) -> glTF (+Y up), as Blender's glTF exporter writes: (x, y, z) -> (x, z, -y)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return np.stack([p[:, 0], p[:, 2], -p[:, 1]], axis=1)


def gltf_to_blender(points: np.ndarray) -> np.ndarray:
    """glTF (+Y up) -> Blender (+Z up), as Blender's glTF importer reads: (x, y, z) -> (x, -z, y)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return np.stack([p[:, 0], -p[:, 2], p[:, 1]], axis=1)


def _evaluated_copy(obj: bpy.types.Object) -> bpy.types.Mesh:
    """A new mesh datablock: `obj` with its modifiers applied, its materials kept."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    return bpy.data.meshes.new_from_object(obj.evaluated_get(depsgraph), preserve_all_data_layers=True,
                                           depsgraph=depsgraph)


def export_local_glb(obj: bpy.types.Object, path: Path, materials: bool = True) -> Path:
    """Write `obj` (modifiers applied, with its materials and textures when `materials`) to a GLB
    in the object's own frame. The export runs on a temporary object at the origin holding a copy
    of the evaluated mesh; the user's objects, data and selection are left as they were."""
    if obj is None or obj.type != "MESH":
        raise ValueError(f"{getattr(obj, 'name', None)!r} is not a mesh object")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh = _evaluated_copy(obj)
    if len(mesh.polygons) == 0:
        bpy.data.meshes.remove(mesh)
        raise ValueError(f"{obj.name!r} has no faces")
    temp = bpy.data.objects.new(f"{obj.name} (Orbitex export)", mesh)
    bpy.context.scene.collection.objects.link(temp)
    try:
        return write_glb(temp, path, apply_modifiers=False, texcoords=True, materials=materials)
    finally:
        bpy.data.objects.remove(temp)
        bpy.data.meshes.remove(mesh)


def scan_points(obj: bpy.types.Object) -> np.ndarray:
    """Evaluated point positions of a point-cloud object, or the vertices of a face-less mesh (object frame)."""
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    if obj.type == "POINTCLOUD":
        data = evaluated.data
        points = np.zeros(len(data.points) * 3, np.float32)
        data.attributes["position"].data.foreach_get("vector", points)
        return points.reshape(-1, 3)
    mesh = evaluated.to_mesh()
    try:
        points = np.zeros(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", points)
    finally:
        evaluated.to_mesh_clear()
    return points.reshape(-1, 3)


def is_scan_object(obj: bpy.types.Object) -> bool:
    return obj is not None and obj.type in ("MESH", "POINTCLOUD")


def export_scan(obj: bpy.types.Object, folder: Path) -> Path:
    """The scan file a complete job uploads, in the object's frame (+Y up): a GLB for a mesh with
    faces, a PLY point cloud for a face-less mesh or a point-cloud object."""
    if not is_scan_object(obj):
        raise ValueError(f"{getattr(obj, 'name', None)!r} is neither a mesh nor a point cloud")
    folder = Path(folder)
    if obj.type == "MESH":
        depsgraph = bpy.context.evaluated_depsgraph_get()
        evaluated = obj.evaluated_get(depsgraph).to_mesh()
        has_faces = len(evaluated.polygons) > 0
        obj.evaluated_get(depsgraph).to_mesh_clear()
        if has_faces:
            return export_local_glb(obj, folder / "scan.glb", materials=False)
    points = scan_points(obj)
    if len(points) == 0:
        raise ValueError(f"{obj.name!r} holds no points")
    return write_points(folder / "scan.ply", blender_to_gltf(points))


def import_triangles(path: Path, name: str, matrix_world: Matrix,
                     collections: list[bpy.types.Collection]) -> bpy.types.Object:
    """A new mesh object from a PLY mesh in glTF's frame (turned to Blender's), placed at
    `matrix_world` and linked to `collections`. Raises PlyError (nothing added) for a bad file."""
    positions, faces = read_triangles(path)
    return mesh_object(name, positions, faces, matrix_world, collections)


def mesh_object(name: str, positions: np.ndarray, faces: np.ndarray, matrix_world: Matrix,
                collections: list[bpy.types.Collection]) -> bpy.types.Object:
    """A new mesh object from glTF-frame triangles (see import_triangles)."""
    mesh = bpy.data.meshes.new(name)
    try:
        mesh.vertices.add(len(positions))
        mesh.vertices.foreach_set("co", gltf_to_blender(positions).astype(np.float32).ravel())
        mesh.loops.add(3 * len(faces))
        mesh.loops.foreach_set("vertex_index", faces.ravel())
        mesh.polygons.add(len(faces))
        mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * len(faces), 3, dtype=np.int32))
        mesh.polygons.foreach_set("loop_total", np.full(len(faces), 3, np.int32))
        mesh.update(calc_edges=True)
        mesh.validate(verbose=False)  # drops degenerate or duplicate faces, should any come back
        mesh.shade_smooth()
        obj = bpy.data.objects.new(name, mesh)
    except BaseException:
        bpy.data.meshes.remove(mesh)
        raise
    obj.matrix_world = matrix_world
    for collection in collections:
        collection.objects.link(obj)
    return obj


def home_collections(obj: bpy.types.Object) -> list[bpy.types.Collection]:
    """Where a result beside `obj` goes: the collections `obj` is in (the scene's when none)."""
    return list(obj.users_collection) or [bpy.context.scene.collection]
