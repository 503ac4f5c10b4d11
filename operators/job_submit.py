"""The submit step shared by operators whose result becomes a new object beside a source:
connect, make a work folder, submit (the job's first step), and say why when that fails.
The pattern is render_orbit_preview's (submit / start / run); its SubmitError is the one error type."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import bpy
from mathutils import Matrix

from ..addon import session
from ..addon.client import BackendClient, BackendError
from ..addon.jobs import Apply, Job, step
from .render_orbit_preview import SubmitError

__all__ = ["SubmitError", "connect", "new_work_dir", "first_step", "placement", "placed_matrix",
           "placed_collections"]


def connect() -> BackendClient | None:
    """session.connect(): None on the UI path while the local backend starts (see session.ui_call)."""
    try:
        return session.connect()
    except BackendError as exc:
        raise SubmitError(f"Orbitex backend unavailable: {exc}") from None


def new_work_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="orbitex-job-"))


def first_step(job: Job, client: BackendClient | None, apply: Apply) -> None:
    """Submit `job`; on refusal remove its work folder and raise SubmitError with the backend's reason.
    Without a client (the local backend is starting) the job stays new: the timer submits it."""
    if client is None:
        return
    step(job, client, apply)
    if not job.active and job.state != "done":
        shutil.rmtree(job.work_dir, ignore_errors=True)
        raise SubmitError(f"Orbitex {job.type} for {job.target!r} {job.state}: {job.message}")


# -- where a new object goes ---------------------------------------------------------------------
# Kept in job.meta as plain values: the source may be moved, renamed or deleted while the job runs.

def placement(matrix: Matrix, source: bpy.types.Object | None, collections: list[bpy.types.Collection]) -> dict:
    """job.meta entries: the matrix (source frame -> world) and the collections, by name.
    `source` (by session_uid) lets the result follow the source when it is moved meanwhile."""
    scene_collection = bpy.context.scene.collection
    return {
        "matrix": [list(row) for row in matrix],
        "source_uid": None if source is None else source.session_uid,
        "source_offset": None if source is None else [list(r) for r in source.matrix_world.inverted_safe() @ matrix],
        "collections": [None if c == scene_collection else c.name for c in collections],
    }


def placed_matrix(meta: dict) -> Matrix:
    """The source's current world matrix (times the offset taken at submit) if it still exists,
    otherwise the matrix taken at submit."""
    if meta.get("source_uid") is not None:
        source = next((o for o in bpy.data.objects if o.session_uid == meta["source_uid"]), None)
        if source is not None:
            return source.matrix_world @ Matrix(meta["source_offset"])
    return Matrix(meta["matrix"])


def placed_collections(meta: dict) -> list[bpy.types.Collection]:
    found = []
    in_scene = bpy.context.scene.collection.children_recursive
    for name in meta.get("collections") or [None]:
        collection = bpy.context.scene.collection if name is None else bpy.data.collections.get(name)
        if collection is not None and (name is None or collection in in_scene) and collection not in found:
            found.append(collection)
    return found or [bpy.context.scene.collection]
