"""Refine panel: TIRE refinement of the active textured mesh or Gaussians from photos of the subject."""
from __future__ import annotations

import bpy

from ..addon.scene_gaussians import is_gaussian_object
from ..operators.refine_subject import RefineOptions, textured_image
from .jobs import _OrbitexSidebar
from .settings import copy_options, refine_settings


class ORBITEX_PT_refine(_OrbitexSidebar, bpy.types.Panel):
    bl_idname = "ORBITEX_PT_refine"
    bl_label = "Refine from Subject"

    def draw(self, context):
        layout = self.layout
        settings = refine_settings(context)
        obj = context.active_object
        if obj is not None and obj.type == "MESH":
            if textured_image(obj) is None:
                layout.label(text=f"{obj.name!r} has no texture: texture it first", icon="ERROR")
            else:
                layout.label(text=f"Textured mesh {obj.name!r}", icon="MESH_DATA")
        elif is_gaussian_object(obj):
            layout.label(text=f"Gaussians {obj.name!r}", icon="OUTLINER_OB_POINTCLOUD")
        else:
            layout.label(text="Select a textured mesh or Gaussians", icon="INFO")
        col = layout.column(align=True)
        col.label(text="Subject photos:")
        for i, slot in enumerate(settings.subjects):
            row = col.row(align=True)
            row.template_ID(slot, "image", open="image.open")
            row.operator("orbitex.refine_subject_remove", text="", icon="X").index = i
        col.operator("orbitex.refine_subject_add", icon="ADD")
        layout.use_property_split = True
        for name in ("inpainter", "consistency", "frames", "size", "source_view", "anchors"):
            layout.prop(settings, name)
        op = layout.operator("orbitex.refine_subject", icon="BRUSH_DATA")
        copy_options(settings, op, (RefineOptions,))
        for slot in settings.subjects:
            if slot.image is not None:
                op.subjects.add().name = slot.image.name
