"""Jobs panel: one row per job with object, type, state, a progress bar with the stage, cancel,
and the job's message in full (wrapped to the sidebar width); a failed cancel says why."""
from __future__ import annotations

import textwrap

import bpy

from ..addon import session

STATE_ICONS = {
    "new": "TIME", "queued": "TIME", "running": "PLAY", "downloading": "IMPORT", "applying": "IMPORT",
    "done": "CHECKMARK", "failed": "ERROR", "cancelled": "CANCEL", "interrupted": "ERROR",
}


def _wrapped_labels(layout, text: str, width_px: float, icon: str = "NONE") -> None:
    chars = max(20, int(width_px / 7))  # ~7 px per character at the default UI scale
    for i, line in enumerate(textwrap.wrap(text, chars) or [""]):
        layout.label(text=line, icon=icon if i == 0 else "BLANK1")


class _OrbitexSidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Orbitex"


class ORBITEX_PT_preview(_OrbitexSidebar, bpy.types.Panel):
    bl_idname = "ORBITEX_PT_preview"
    bl_label = "Orbit Preview"

    def draw(self, context):
        layout = self.layout
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            layout.label(text="Select a mesh", icon="INFO")
        layout.operator("orbitex.render_orbit_preview", icon="RENDER_STILL")


class ORBITEX_PT_jobs(_OrbitexSidebar, bpy.types.Panel):
    bl_idname = "ORBITEX_PT_jobs"
    bl_label = "Jobs"

    def draw(self, context):
        layout = self.layout
        jobs = session.board.jobs()
        if not jobs:
            layout.label(text="No jobs yet")
            return
        width = context.region.width if context.region else 300
        for job in reversed(jobs):  # newest first
            box = layout.box()
            head = box.row()
            head.label(text=f"{job.target} · {job.type}", icon=STATE_ICONS.get(job.state, "QUESTION"))
            cancelling = job.active and job.cancel_requested
            head.label(text="cancelling" if cancelling else job.state)
            if job.active:
                if not cancelling:
                    head.operator("orbitex.cancel_job", text="", icon="X").job_id = job.id
                stage = job.stage or job.state
                box.progress(factor=job.progress, type="BAR", text=f"{stage} {job.progress * 100:.0f}%")
            elif job.downloaded:  # a finished result can be (re)applied and its files looked at
                row = box.row(align=True)
                row.operator("orbitex.apply_result", text="Apply", icon="CHECKMARK").job_id = job.id
                row.operator("orbitex.open_result_folder", text="Files", icon="FILE_FOLDER").job_id = job.id
            if job.message and job.message != job.stage:
                col = box.column(align=True)
                col.alert = job.state in ("failed", "interrupted")
                _wrapped_labels(col, job.message, width - 40)
            if job.active and job.cancel_error:
                col = box.column(align=True)
                col.alert = True
                _wrapped_labels(col, job.cancel_error, width - 40)
        if any(not job.active for job in jobs):
            layout.operator("orbitex.clear_jobs", icon="TRASH")
