"""Gaussians panel: reconstruct 3D Gaussians from the active textured mesh, image empty or an image."""
from __future__ import annotations

import bpy

from .jobs import _OrbitexSidebar


class ORBITEX_PT_reconstruct(_OrbitexSidebar, bpy.types.Panel):
    bl_idname = "ORBITEX_PT_reconstruct"
    bl_label = "Gaussians"

    def draw(self, context):
        layout = self.layout
        obj = context.active_object
        if obj is not None and obj.type == "MESH":
            layout.label(text=f"From mesh {obj.name!r}", icon="MESH_DATA")
        elif obj is not None and obj.type == "EMPTY" and obj.empty_display_type == "IMAGE":
            layout.label(text=f"From image {obj.name!r}", icon="IMAGE_DATA")
        else:
            layout.label(text="Select a textured mesh or image empty,", icon="INFO")
            layout.label(text="or pick an image in the dialog", icon="BLANK1")
        layout.operator("orbitex.reconstruct_gaussians", icon="OUTLINER_OB_POINTCLOUD")
