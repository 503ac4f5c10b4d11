"""A second renderer for the bake benchmark: Blender's Cycles, run under the bpy interpreter.

The benchmark's own renderer (bench/synthetic.py: the project's rasterizer, box-filtered
supersampling, bilinear texture lookups) is what the bake was tuned on; Cycles renders the same
asset with another sampler, pixel filter (Blackman-Harris) and texture filtering, so its frames
differ from the bake's own renders the way outside renders do. The mesh is built from the arrays
in Blender's world as they are (glTF's frame: no axis conversion), with an emission material of
the texture (Standard view transform: the PNG's values come back out), and each camera takes the
view set's camera-to-world matrix directly (both are OpenGL cameras).

  .venv/blender/bin/python bench/render_cycles.py JOB.json
JOB.json: {"mesh": "m.npz" (positions, faces, uvs), "texture": "t.png", "cameras": [{"c2w": 4x4,
"fx": .., "w": .., "h": ..}], "samples": 16, "out": "folder"}; writes folder/0000.png ... (RGBA).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix


def build(job: dict) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = int(job.get("samples", 16))
    scene.cycles.use_denoising = False
    scene.render.film_transparent = True
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    data = np.load(job["mesh"])
    pos, faces, uvs = data["positions"], data["faces"], data["uvs"]
    mesh = bpy.data.meshes.new("asset")
    mesh.from_pydata(pos.tolist(), [], faces.tolist())
    layer = mesh.uv_layers.new(name="UVMap")
    loops = np.zeros(len(mesh.loops), dtype=np.int64)
    mesh.loops.foreach_get("vertex_index", loops)
    layer.data.foreach_set("uv", uvs[loops].astype(np.float32).ravel())
    obj = bpy.data.objects.new("asset", mesh)
    scene.collection.objects.link(obj)
    mat = bpy.data.materials.new("emission")
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(job["texture"])
    tex.image.colorspace_settings.name = "sRGB"
    tex.interpolation = "Linear"
    emit = nodes.new("ShaderNodeEmission")
    out = nodes.new("ShaderNodeOutputMaterial")
    links.new(tex.outputs["Color"], emit.inputs["Color"])
    links.new(emit.outputs["Emission"], out.inputs["Surface"])
    mesh.materials.append(mat)
    world = bpy.data.worlds.new("black")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
    scene.world = world


def render(job: dict) -> None:
    scene = bpy.context.scene
    folder = Path(job["out"])
    folder.mkdir(parents=True, exist_ok=True)
    cam_data = bpy.data.cameras.new("cam")
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    for i, c in enumerate(job["cameras"]):
        scene.render.resolution_x, scene.render.resolution_y = int(c["w"]), int(c["h"])
        scene.render.resolution_percentage = 100
        cam_data.sensor_fit = "HORIZONTAL"
        cam_data.angle = 2 * math.atan(c["w"] / (2 * c["fx"]))
        cam.matrix_world = Matrix(c["c2w"])
        scene.render.filepath = str(folder / f"{i:04d}.png")
        bpy.ops.render.render(write_still=True)


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[-1]).read_text())
    build(spec)
    render(spec)
