"""Operators on a finished job's result: apply it (again) and open the folder holding its files."""
from __future__ import annotations

from pathlib import Path

import bpy

from ..addon import session
from . import texture_jobs
from .jobs import JobOperator


def result_folder(job) -> Path:  # type: ignore[no-untyped-def]
    results = job.work_dir / "results"
    return results if results.is_dir() else job.work_dir


def open_folder(path: Path) -> None:
    """Show `path` in the system's file browser (tests replace this)."""
    bpy.ops.wm.path_open(filepath=str(path))


class ORBITEX_OT_apply_result(JobOperator, bpy.types.Operator):
    bl_idname = "orbitex.apply_result"
    bl_label = "Apply Result"
    bl_description = ("Apply this job's downloaded result (again): a new material on the object it was made for, "
                      "found by its id even when it was renamed; old materials are kept")
    bl_options = {"UNDO"}  # no REGISTER: a Redo-panel tweak would apply the result a second time

    def execute(self, context):
        entry = session.board.get(self.job_id)
        if entry is None:
            return self.no_such_job()
        job = entry.job
        if job.active:
            self.report({"ERROR"}, f"the {job.type} job for {job.target!r} is still {job.state}")
            return {"CANCELLED"}
        missing = [n for n in (job.fetch or job.results) if n not in job.downloaded or not job.downloaded[n].is_file()]
        if not job.downloaded or missing:
            self.report({"ERROR"}, f"the {job.type} job for {job.target!r} has no downloaded result to apply"
                                   + (f" (missing: {', '.join(missing)})" if missing and job.downloaded else ""))
            return {"CANCELLED"}
        try:
            if "target" in job.meta:
                applied = texture_jobs.apply_to(job, allow_renamed=True)
                what = f"material {applied.material.name!r} on {job.meta['applied']['object']!r}"
            else:
                entry.apply(job)
                what = f"the {job.type} result for {job.target!r}"
        except Exception as exc:  # the reason goes to the user; the job keeps its result
            job.message = f"could not apply the result: {exc}"
            self.report({"ERROR"}, f"Orbitex: {job.message}")
            return {"CANCELLED"}
        job.state, job.progress, job.stage = "done", 1.0, "applied"
        self.report({"INFO"}, f"Orbitex: applied {what}")
        return {"FINISHED"}


class ORBITEX_OT_open_result_folder(JobOperator, bpy.types.Operator):
    bl_idname = "orbitex.open_result_folder"
    bl_label = "Open Result Folder"
    bl_description = "Show the folder holding this job's downloaded result files"

    def execute(self, context):
        entry = session.board.get(self.job_id)
        if entry is None:
            return self.no_such_job()
        folder = result_folder(entry.job)
        if not folder.is_dir():
            self.report({"ERROR"}, f"the result folder {folder} no longer exists")
            return {"CANCELLED"}
        open_folder(folder)
        self.report({"INFO"}, f"Orbitex: {folder}")
        return {"FINISHED"}
