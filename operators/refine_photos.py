"""The Refine panel's list of subject photos (Scene.orbitex_refine.subjects): add one, remove one.
Apart from refine_subject.py because they edit the panel's scene settings, which are built on
refine_subject's options: the arrows point one way."""
from __future__ import annotations

import bpy
from bpy.props import IntProperty, StringProperty

from ..panels.settings import refine_settings
from .refine_subject import MAX_SUBJECTS


class ORBITEX_OT_refine_subject_add(bpy.types.Operator):
    bl_idname = "orbitex.refine_subject_add"
    bl_label = "Add Subject Photo"
    bl_description = "Add a photo of the subject to the Refine list (pick an image of this file, or open a file)"
    bl_options = {"UNDO"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})

    def execute(self, context):
        settings = refine_settings(context)
        if len(settings.subjects) >= MAX_SUBJECTS:
            self.report({"ERROR"}, f"at most {MAX_SUBJECTS} subject photos")
            return {"CANCELLED"}
        slot = settings.subjects.add()
        if self.filepath:
            try:
                slot.image = bpy.data.images.load(bpy.path.abspath(self.filepath), check_existing=True)
            except RuntimeError as exc:
                settings.subjects.remove(len(settings.subjects) - 1)
                self.report({"ERROR"}, f"cannot open {self.filepath!r}: {exc}")
                return {"CANCELLED"}
        return {"FINISHED"}


class ORBITEX_OT_refine_subject_remove(bpy.types.Operator):
    bl_idname = "orbitex.refine_subject_remove"
    bl_label = "Remove Subject Photo"
    bl_description = "Remove this photo from the Refine list (the image stays in the file)"
    bl_options = {"UNDO"}

    index: IntProperty(min=0)

    @classmethod
    def poll(cls, context):
        return len(refine_settings(context).subjects) > 0

    def execute(self, context):
        subjects = refine_settings(context).subjects
        if self.index >= len(subjects):
            return {"CANCELLED"}
        subjects.remove(self.index)
        return {"FINISHED"}
