"""Jobs whose result is a texture on the artist's own object (texture, bake): submit and apply.

Shared by texture_selected, bake_from_cameras and batch_collection. The object is uploaded as a
GLB; with an existing UV map, as it renders (modifiers applied, every UV map, the chosen one
named in `uv_map` as TEXCOORD_n); when a new UV map is wanted, its own mesh without UVs, so the
backend makes one (xatlas) that fits the object's mesh and comes back as a new layer.
The target is remembered by its stable id (job.meta["target"]), never by name alone.
"""
from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

from ..addon import scene_io, session
from ..addon.client import BackendClient
from ..addon.jobs import Job, run_blocking
from .job_submit import SubmitError, connect, first_step, new_work_dir

RESULTS = ("glb", "texture")  # result names of both the texture and the bake pipeline
UV_MODES = [("EXISTING", "Existing", "Paint on a UV map the object already has (by name; empty: the active render UV map)"),
            ("NEW", "New", "Make a new UV map (xatlas on the backend) and add it as a new layer")]

# role -> file to upload, made in the job's work folder (e.g. the reference image, the view set)
ExtraInputs = Callable[[Path], dict[str, Path]]


def plan_uv_map(obj: bpy.types.Object, mode: str, name: str) -> str | None:
    """The UV map the texture goes on, or None for a new one. Raises ValueError naming the object."""
    if obj is None or obj.type != "MESH":
        raise ValueError(f"{getattr(obj, 'name', obj)!r} is not a mesh")
    mesh = obj.data
    if mode == "NEW" or len(mesh.uv_layers) == 0:
        if len(mesh.uv_layers) >= scene_io.MAX_UV_MAPS:
            raise ValueError(f"{obj.name!r} already has {scene_io.MAX_UV_MAPS} UV maps, Blender's limit")
        return None
    if not name:
        active = next((u for u in mesh.uv_layers if u.active_render), mesh.uv_layers.active)
        name = active.name
    scene_io.uv_map_index(obj, name)
    return name


def submit(client: BackendClient, obj: bpy.types.Object, job_type: str, params: dict[str, Any],
           extra_inputs: ExtraInputs, uv_mode: str = "EXISTING", uv_map: str = "") -> Job:
    """Export `obj`, write the other inputs, submit. Raises SubmitError (nothing changed)."""
    try:
        chosen = plan_uv_map(obj, uv_mode, uv_map)
    except ValueError as exc:
        raise SubmitError(str(exc)) from None
    work_dir = new_work_dir()
    params = copy.deepcopy(params)
    try:
        new_map = chosen is None
        mesh = scene_io.export_mesh_glb(obj, work_dir / "inputs" / "mesh.glb", apply_modifiers=not new_map,
                                        texcoords=not new_map)
        if not new_map:
            # the bake's options: a bake job's params themselves, or a texture job's nested `bake`
            bake_options = params["bake"] if "bake" in params else params
            bake_options["uv_map"] = f"TEXCOORD_{scene_io.uv_map_index(obj, chosen)}"
        inputs = {"mesh": mesh, **extra_inputs(work_dir / "inputs")}
    except (RuntimeError, ValueError, OSError) as exc:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise SubmitError(f"could not prepare {obj.name!r}: {exc}") from None
    job = Job(type=job_type, params=params, inputs=inputs, target=obj.name, work_dir=work_dir, fetch=RESULTS,
              meta={"target": scene_io.target_ref(obj), "uv_map": chosen, "exported": str(mesh)})
    first_step(job, client, apply)
    return job


def apply_to(job: Job, allow_renamed: bool = False) -> scene_io.AppliedTexture:
    """Put the job's downloaded texture on its object (found by id). Raises on anything wrong."""
    obj = scene_io.find_target(job.meta["target"], allow_renamed)
    applied = scene_io.apply_texture_result(obj, job.downloaded["glb"], job.downloaded["texture"],
                                            Path(job.meta["exported"]), job.meta["uv_map"],
                                            name=f"{obj.name} Orbitex {job.type}")
    job.meta["applied"] = {"object": obj.name, "material": applied.material.name, "image": applied.image.name,
                           "uv_map": applied.uv_map}
    job.message = f"material {applied.material.name!r} on UV map {applied.uv_map!r}" + (
        f"; {applied.note}" if applied.note else "")
    return applied


def apply(job: Job) -> None:
    """The step function's apply callback (timer, blocking runs): a rename is not followed."""
    apply_to(job)


@dataclass
class Submitted:
    jobs: list[Job] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (object name, why it was not submitted)


def submit_each(objects: Sequence[bpy.types.Object], job_type: str, params: dict[str, Any],
                extra_inputs: ExtraInputs, uv_mode: str, uv_map: str,
                client: BackendClient | None) -> tuple[Submitted, BackendClient | None]:
    """One job per object (not yet tracked); an object that cannot be submitted is listed with its
    reason and the rest go on. An unreachable backend raised SubmitError in connect() before anything
    was done; a None client (the local backend is starting) leaves the jobs to the timer to submit."""
    out = Submitted()
    for obj in objects:
        try:
            out.jobs.append(submit(client, obj, job_type, params, extra_inputs, uv_mode, uv_map))
        except SubmitError as exc:
            out.failed.append((obj.name, str(exc)))
    return out, client


def track_all(jobs: Sequence[Job], client: BackendClient | None) -> None:
    """invoke(): leave the jobs to the session timer (and list them in the Jobs panel)."""
    for job in jobs:
        session.track(job, client, apply)


def wait_all(jobs: Sequence[Job], client: BackendClient, timeout: float = 3600.0) -> None:
    """execute() (scripts, background mode): block until every job has ended, results applied,
    then list them in the Jobs panel."""
    for job in jobs:
        run_blocking(job, client, apply, timeout=timeout)
    track_all(jobs, client)


def summary(jobs: Sequence[Job], failed: Sequence[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """(objects textured, [(object, reason)] that were not)."""
    done = [j.target for j in jobs if j.state == "done"]
    bad = list(failed) + [(j.target, f"{j.state}: {j.message}") for j in jobs if not j.active and j.state != "done"]
    return done, bad


class SubmitsPerObject:
    """invoke()/execute() for operators that submit one job per object via `submit_jobs(context)`
    (-> (Submitted, client), raising SubmitError when nothing can start)."""

    job_word = "texture"  # for messages
    done_word = "textured"

    def submit_jobs(self, context) -> tuple[Submitted, BackendClient | None]:  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def _report_failed(self, failed: Sequence[tuple[str, str]]) -> None:
        for name, why in failed:
            self.report({"WARNING"}, f"{name}: {why}")  # type: ignore[attr-defined]

    def invoke(self, context, event):  # type: ignore[no-untyped-def]
        """From the UI: submit and return at once; the session timer steps the jobs and applies results."""
        try:
            with session.ui_call():
                submitted, client = self.submit_jobs(context)
        except SubmitError as exc:
            self.report({"ERROR"}, str(exc))  # type: ignore[attr-defined]
            return {"CANCELLED"}
        track_all(submitted.jobs, client)
        self._report_failed(submitted.failed)
        if not submitted.jobs:
            self.report({"ERROR"}, f"Orbitex: no {self.job_word} job could be submitted")  # type: ignore[attr-defined]
            return {"CANCELLED"}
        self.report({"INFO"}, f"Orbitex: {len(submitted.jobs)} {self.job_word} job(s) submitted")  # type: ignore[attr-defined]
        return {"FINISHED"}

    def execute(self, context):  # type: ignore[no-untyped-def]
        """Scripts, background mode, tests: block until every job has ended and its result is applied."""
        try:
            submitted, client = self.submit_jobs(context)
        except SubmitError as exc:
            self.report({"ERROR"}, str(exc))  # type: ignore[attr-defined]
            return {"CANCELLED"}
        wait_all(submitted.jobs, client)
        done, failed = summary(submitted.jobs, submitted.failed)
        self._report_failed(failed)
        if not done:
            self.report({"ERROR"}, f"Orbitex: nothing was {self.done_word}; "  # type: ignore[attr-defined]
                                   + "; ".join(f"{n}: {w}" for n, w in failed))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Orbitex: {self.done_word} {', '.join(done)}")  # type: ignore[attr-defined]
        return {"FINISHED"}
