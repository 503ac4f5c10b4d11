"""Operators on the job list: cancel one job, forget ended ones."""
from __future__ import annotations

import bpy
from bpy.props import StringProperty

from ..addon import session


class ORBITEX_OT_cancel_job(bpy.types.Operator):
    bl_idname = "orbitex.cancel_job"
    bl_label = "Cancel Job"
    bl_description = "Stop this job; its result is not applied and the scene stays as it is"

    job_id: StringProperty(name="Job", description="Local id of the job (as listed in the Jobs panel)")

    def execute(self, context):
        job = session.board.cancel(self.job_id)
        if job is None:
            self.report({"ERROR"}, f"no Orbitex job {self.job_id!r} in this session")
            return {"CANCELLED"}
        if job.message.startswith("cancel failed"):
            self.report({"ERROR"}, job.message)
            return {"CANCELLED"}
        return {"FINISHED"}


class ORBITEX_OT_clear_jobs(bpy.types.Operator):
    bl_idname = "orbitex.clear_jobs"
    bl_label = "Clear Finished Jobs"
    bl_description = "Remove ended jobs from the list (applied results stay in the file)"

    def execute(self, context):
        session.board.clear_finished()
        return {"FINISHED"}
