"""Operators on the job list: cancel one job, forget ended ones."""
from __future__ import annotations

import bpy
from bpy.props import StringProperty

from ..addon import session


class JobOperator:
    """Mixin for an operator on one job of the Jobs panel, named by its local id."""

    job_id: StringProperty(name="Job", description="Local id of the job (as listed in the Jobs panel)")

    @classmethod
    def poll(cls, context):
        return bool(session.board.jobs())

    def no_such_job(self) -> set[str]:
        """Report that `job_id` names no job of this session; returns the operator's result."""
        self.report({"ERROR"}, f"no Orbitex job {self.job_id!r} in this session")
        return {"CANCELLED"}


class ORBITEX_OT_cancel_job(JobOperator, bpy.types.Operator):
    bl_idname = "orbitex.cancel_job"
    bl_label = "Cancel Job"
    bl_description = "Stop this job; its result is not applied and the scene stays as it is"

    def execute(self, context):
        # no network here: the job's next step on a worker thread tells the backend (the Jobs
        # panel shows "cancelling", or why the backend could not be told)
        if session.cancel(self.job_id) is None:
            return self.no_such_job()
        return {"FINISHED"}


class ORBITEX_OT_clear_jobs(bpy.types.Operator):
    bl_idname = "orbitex.clear_jobs"
    bl_label = "Clear Finished Jobs"
    bl_description = "Remove ended jobs from the list (applied results stay in the file)"

    @classmethod
    def poll(cls, context):
        return any(not job.active for job in session.board.jobs())

    def execute(self, context):
        session.board.clear_finished()
        return {"FINISHED"}
