"""Scan Completion panel: close the back of the selected scans (or a collection's)."""
from __future__ import annotations

import bpy

from .jobs import _OrbitexSidebar


class ORBITEX_PT_complete(_OrbitexSidebar, bpy.types.Panel):
    bl_idname = "ORBITEX_PT_complete"
    bl_label = "Scan Completion"

    def draw(self, context):
        layout = self.layout
        scans = [o for o in context.selected_objects if o.type in ("MESH", "POINTCLOUD")]
        if scans:
            layout.label(text=f"{len(scans)} scan(s) selected", icon="MESH_DATA")
        else:
            layout.label(text="Select scans, or pick a collection in the dialog", icon="INFO")
        layout.operator("orbitex.complete_back", icon="MOD_SOLIDIFY")
