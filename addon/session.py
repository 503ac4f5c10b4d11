"""State of the running add-on: the job board, the local backend process, the job timer.

`connect()` turns the preferences into a working BackendClient (starting the local backend on
first use); `track()` puts a submitted job on the board and makes sure the timer steps it.
`shutdown()` (from unregister) leaves nothing behind.
"""
from __future__ import annotations

import atexit
from pathlib import Path

import bpy

from . import ADDON_PACKAGE, scene_io
from .backend_link import LocalBackend, data_dir_problem, python_problem, start_local, url_problem
from .client import BackendClient, BackendError
from .jobs import Apply, Job, JobBoard

TIMER_INTERVAL_S = 0.5

board = JobBoard()
_local: LocalBackend | None = None


def preferences():
    addon = bpy.context.preferences.addons.get(ADDON_PACKAGE)
    if addon is None:
        raise BackendError(f"the Orbitex add-on ({ADDON_PACKAGE}) is not enabled in the preferences")
    return addon.preferences


def default_data_dir() -> Path:
    """The extension's user folder (kept across updates), or Blender's config folder for a legacy install."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="backend-data", create=True))
    except ValueError:  # not installed as an extension (legacy add-on, tests)
        return Path(bpy.utils.user_resource("CONFIG", path="orbitex/backend-data", create=True))


def local_data_dir(prefs) -> Path:
    return Path(bpy.path.abspath(prefs.data_dir)).expanduser() if prefs.data_dir.strip() else default_data_dir()


def local_backend() -> LocalBackend | None:
    """The local backend this add-on started, if it is still running."""
    return _local if _local is not None and _local.running() else None


def start_local_backend(prefs) -> LocalBackend:
    global _local
    python = bpy.path.abspath(prefs.backend_python)
    data_dir = local_data_dir(prefs)
    current = local_backend()
    if current is not None and (current.python, current.data_dir, current.port) == (python, data_dir, prefs.port):
        return current
    stop_local_backend()
    if problem := (python_problem(python) or data_dir_problem(str(data_dir))):
        raise BackendError(problem)
    _local = start_local(python, data_dir, prefs.port)
    return _local


def stop_local_backend() -> None:
    global _local
    if _local is not None:
        _local.stop()
        _local = None


def connect() -> BackendClient:
    """A client for the configured backend that has just answered /health; raises BackendError."""
    prefs = preferences()
    if prefs.backend_mode == "LOCAL":
        local = start_local_backend(prefs)
        client = local.client()
    else:
        if problem := url_problem(prefs.remote_url):
            raise BackendError(problem)
        client = BackendClient(prefs.remote_url.strip(), prefs.remote_token.strip())
    client.health()
    return client


def _redraw_panels() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in (wm.windows if wm else ()):
        for area in (window.screen.areas if window.screen else ()):
            if area.type == "VIEW_3D":
                area.tag_redraw()


def tick() -> float | None:
    """The timer body: step every active job once; keep running while any is active."""
    before = {job.id: job.state for job in board.jobs()}
    board.step_all()
    for job in board.jobs():
        if job.state == "done" and before.get(job.id) != "done":
            scene_io.push_undo(f"Orbitex {job.type} result")
    _redraw_panels()
    return TIMER_INTERVAL_S if board.any_active() else None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        # persistent: jobs keep being stepped when another .blend is opened meanwhile
        bpy.app.timers.register(tick, first_interval=TIMER_INTERVAL_S, persistent=True)


def track(job: Job, client: BackendClient, apply: Apply) -> Job:
    board.add(job, client, apply)
    if job.active:
        ensure_timer()
    return job


def shutdown() -> None:
    """Stop the timer and the local backend, forget jobs and their temporary folders."""
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    stop_local_backend()
    board.clear()
    atexit.unregister(stop_local_backend)


def startup() -> None:
    # Blender does not unregister add-ons when it quits: make sure the local backend ends with it.
    atexit.register(stop_local_backend)
