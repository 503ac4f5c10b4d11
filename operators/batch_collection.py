"""orbitex.batch_collection: texture or bake every mesh of a collection (its child collections
included), one job per mesh. One failure does not stop the rest; the batch keeps an overall
progress and ends with a summary: textured, failed (with reasons), skipped (not meshes)."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import bpy
from bpy.props import EnumProperty, StringProperty

from ..addon import session
from ..addon.jobs import Job, count_by_node, step
from .bake_from_cameras import BakeOptions, submit_bakes
from .job_submit import SubmitError
from .texture_jobs import apply, summary, track_all
from .texture_selected import TextureOptions, submit_textures

MODES = [("TEXTURE", "Texture", "Texture each mesh from the reference image (Texture section's settings)"),
         ("BAKE", "Bake", "Bake each mesh from the cameras' images (Bake from Cameras section's settings)")]
POLL_INTERVAL_S = 0.25


@dataclass
class Batch:
    collection: str
    job_type: str
    jobs: list[Job] = field(default_factory=list)
    not_submitted: list[tuple[str, str]] = field(default_factory=list)  # (object, why)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (object, why)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def active(self) -> bool:
        return any(job.active for job in self.jobs)

    @property
    def progress(self) -> float:
        """Overall 0-1: ended jobs (and objects that never started) count as finished."""
        total = len(self.jobs) + len(self.not_submitted)
        if total == 0:
            return 1.0
        return (sum(job.progress if job.active else 1.0 for job in self.jobs) + len(self.not_submitted)) / total

    def outcome(self) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
        """(done, failed with reasons, skipped with reasons); active jobs are in none of them."""
        done, failed = summary([j for j in self.jobs if not j.active], self.not_submitted)
        return done, failed, list(self.skipped)

    def summary_text(self) -> str:
        done, failed, skipped = self.outcome()
        word = "textured" if self.job_type == "texture" else "baked"
        parts = [f"{len(done)} {word}" + (f" ({', '.join(done)})" if done else "")]
        parts.append(f"{len(failed)} failed" + (": " + "; ".join(f"{n}: {w}" for n, w in failed) if failed else ""))
        parts.append(f"{len(skipped)} skipped" + (": " + "; ".join(f"{n} ({w})" for n, w in skipped) if skipped else ""))
        running = sum(job.active for job in self.jobs)
        return (f"{running} running; " if running else "") + "; ".join(parts)

    def node_lines(self) -> list[str]:
        """Done/failed/running per backend machine, e.g. 'gpu-a: 3 done, 0 failed, 1 running'."""
        return [f"{node or 'not started'}: " + ", ".join(f"{n} {group}" for group, n in counts.items()
                                                         if n or group != "queued")
                for node, counts in sorted(count_by_node(self.jobs).items())]


batches: list[Batch] = []  # this session's batches, newest last (the Batch panel shows the last)


def collection_meshes(collection: bpy.types.Collection) -> tuple[list[bpy.types.Object], list[tuple[str, str]]]:
    """The meshes of `collection` and its children, and the other objects with why they are skipped."""
    meshes, skipped = [], []
    for obj in sorted(collection.all_objects, key=lambda o: o.name):
        if obj.type == "MESH":
            meshes.append(obj)
        else:
            skipped.append((obj.name, f"not a mesh ({obj.type.lower()})"))
    return meshes, skipped


class ORBITEX_OT_batch_collection(TextureOptions, BakeOptions, bpy.types.Operator):
    bl_idname = "orbitex.batch_collection"
    bl_label = "Batch Collection"
    bl_description = ("Texture or bake every mesh of a collection on the Orbitex backend, one job per mesh; "
                      "a failure does not stop the others")
    bl_options = {"UNDO"}  # no REGISTER: a Redo-panel tweak must not submit the whole batch again

    collection: StringProperty(name="Collection", description="The collection whose meshes are processed")
    mode: EnumProperty(name="Job", items=MODES, default="TEXTURE")

    @classmethod
    def poll(cls, context):
        return len(bpy.data.collections) > 0

    def _start(self, context) -> tuple[Batch, object]:  # type: ignore[no-untyped-def]
        collection = bpy.data.collections.get(self.collection)
        if collection is None:
            raise SubmitError(f"no collection {self.collection!r}" if self.collection else "no collection chosen")
        meshes, skipped = collection_meshes(collection)
        if not meshes:
            raise SubmitError(f"the collection {collection.name!r} holds no mesh")
        if self.mode == "TEXTURE":
            submitted, client = submit_textures(self, meshes)
        else:
            submitted, client = submit_bakes(self, context, meshes)
        batch = Batch(collection.name, "texture" if self.mode == "TEXTURE" else "bake", submitted.jobs,
                      submitted.failed, skipped)
        batches.append(batch)
        return batch, client

    def _report_summary(self, batch: Batch) -> set[str]:
        done, failed, _skipped = batch.outcome()
        text = f"Orbitex batch on {batch.collection!r}: {batch.summary_text()}"
        if not done:
            self.report({"ERROR"}, text)
            return {"CANCELLED"}
        self.report({"WARNING"} if failed else {"INFO"}, text)
        return {"FINISHED"}

    def invoke(self, context, event):
        """From the UI: submit every mesh's job and return; the timer steps them, the panel shows progress."""
        try:
            with session.ui_call():
                batch, client = self._start(context)
        except SubmitError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        track_all(batch.jobs, client)
        if not batch.jobs:
            return self._report_summary(batch)
        self.report({"INFO"}, f"Orbitex batch: {len(batch.jobs)} job(s) submitted for {batch.collection!r}")
        return {"FINISHED"}

    def execute(self, context):
        """Scripts, background mode, tests: step every job until all have ended, then summarize."""
        try:
            batch, client = self._start(context)
        except SubmitError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        wm = context.window_manager
        wm.progress_begin(0, 1000)
        try:
            while batch.active:
                for job in batch.jobs:
                    if job.active:
                        step(job, client, apply)
                wm.progress_update(int(batch.progress * 1000))
                if batch.active:
                    time.sleep(POLL_INTERVAL_S)
        finally:
            wm.progress_end()
        track_all(batch.jobs, client)
        return self._report_summary(batch)


class ORBITEX_OT_cancel_batch(bpy.types.Operator):
    bl_idname = "orbitex.cancel_batch"
    bl_label = "Cancel Batch"
    bl_description = "Stop every unfinished job of the latest batch; finished results stay applied"

    @classmethod
    def poll(cls, context):
        return bool(batches) and batches[-1].active

    def execute(self, context):
        if not batches or not batches[-1].active:
            self.report({"ERROR"}, "no Orbitex batch is running")
            return {"CANCELLED"}
        for job in batches[-1].jobs:
            if job.active:
                session.cancel(job.id)
        return {"FINISHED"}
