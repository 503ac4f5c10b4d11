"""State of the running add-on: the job board, the local backend process, the job timer.

`connect()` turns the preferences into a working BackendClient, starting the local backend on
first use; inside `ui_call()` (an operator's UI path) it never waits for that start: it returns None
while the backend starts on a worker thread, and the job is submitted when it answers. `track()` puts a
job on the board and makes sure the timer steps it: the timer runs every network step (submit,
poll, cancel, download) on a worker thread and applies results on the main thread, so the UI never waits
on the network. `shutdown()` (from unregister) leaves nothing behind.
"""
from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import bpy

from . import ADDON_PACKAGE, scene_io
from .backend_link import LocalBackend, data_dir_problem, python_problem, start_local, url_problem
from .client import BackendClient, BackendError
from .jobs import NOT_SUBMITTED, Apply, Job, JobBoard, Tracked, request_cancel, step

TIMER_INTERVAL_S = 0.5
OFFLINE_MESSAGE = ("Blender's online access is off (Preferences > System > Network > Allow Online Access), "
                   "so Orbitex does not contact the remote backend; allow it, or use the Local backend")

board = JobBoard()
_local: LocalBackend | None = None
_local_lock = threading.Lock()  # the local backend is started from the main or a worker thread
_workers: ThreadPoolExecutor | None = None
_in_flight: dict[str, Future] = {}  # job id -> its network step running on a worker
_starting: Future | None = None  # a local backend start running on a worker
_ui_call: ContextVar[bool] = ContextVar("orbitex_ui_call", default=False)


@dataclass(frozen=True)
class BackendConfig:
    """The preferences as plain values, read on the main thread, usable on a worker thread."""

    mode: str
    python: str
    data_dir: Path
    port: int
    url: str
    token: str
    online: bool


class BackendStatus:
    """What the Backend panel shows; refreshed off the UI thread (never from draw())."""

    def __init__(self) -> None:
        self.url = ""
        self.reachable: bool | None = None  # None: not checked yet (or a check is running)
        self.detail = ""
        self.checked_at = 0.0

    def record(self, url: str, reachable: bool, detail: str = "") -> None:
        self.url, self.reachable, self.detail, self.checked_at = url, reachable, detail, time.monotonic()


status = BackendStatus()


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


def backend_config() -> BackendConfig:
    """Main thread only: the preferences (and Blender's online-access setting) as plain values."""
    prefs = preferences()
    return BackendConfig(prefs.backend_mode, bpy.path.abspath(prefs.backend_python), local_data_dir(prefs),
                         prefs.port, prefs.remote_url.strip(), prefs.remote_token.strip(),
                         bool(getattr(bpy.app, "online_access", True)))


def _running_local(config: BackendConfig) -> LocalBackend | None:
    current = local_backend()
    if current is not None and (current.python, current.data_dir, current.port) == (config.python, config.data_dir,
                                                                                     config.port):
        return current
    return None


def start_local_backend(config: BackendConfig) -> LocalBackend:
    """The local backend of `config`, started if needed (blocks until it answers; any thread)."""
    global _local
    with _local_lock:
        if (current := _running_local(config)) is not None:
            return current
        stop_local_backend()
        if problem := (python_problem(config.python) or data_dir_problem(str(config.data_dir))):
            raise BackendError(problem)
        _local = start_local(config.python, config.data_dir, config.port)
        return _local


def stop_local_backend() -> None:
    global _local
    if _local is not None:
        _local.stop()
        _local = None


def is_loopback(url: str) -> bool:
    """A URL on this machine (127.0.0.0/8, ::1, localhost): reaching it is no online access."""
    import ipaddress
    import urllib.parse

    host = urllib.parse.urlsplit(url.strip()).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connect_with(config: BackendConfig) -> BackendClient:
    """A client for `config`'s backend that has just answered /health; raises BackendError. Any thread."""
    if config.mode == "LOCAL":
        client = start_local_backend(config).client()
    else:
        if problem := url_problem(config.url):
            raise BackendError(problem)
        if not config.online and not is_loopback(config.url):
            raise BackendError(OFFLINE_MESSAGE)
        client = BackendClient(config.url, config.token)
    try:
        client.health()
    except BackendError as exc:
        status.record(client.base_url, False, str(exc))
        raise
    status.record(client.base_url, True)
    return client


@contextmanager
def ui_call() -> Iterator[None]:
    """Around an operator's UI path: connect() does not wait for the local backend to start."""
    token = _ui_call.set(True)
    try:
        yield
    finally:
        _ui_call.reset(token)


def connect() -> BackendClient | None:
    """A client for the configured backend that has just answered; BackendError when it cannot.
    Scripts, execute() and background mode wait for a local backend to start; inside `ui_call()`
    a local backend that is not running yet is started on a worker thread and None comes back
    (track such a job without a client: it is submitted when the backend answers)."""
    config = backend_config()
    if _ui_call.get() and config.mode == "LOCAL" and _running_local(config) is None:
        start_in_background(config)
        return None
    return connect_with(config)


def start_in_background(config: BackendConfig | None = None) -> Future:
    """Start (local) or check (remote) the backend on a worker thread; the panel shows the outcome."""
    global _starting
    config = config or backend_config()
    if _starting is None or _starting.done():
        status.reachable, status.detail = None, ""
        _starting = _pool().submit(connect_with, config)
        if not bpy.app.timers.is_registered(_watch_start):
            bpy.app.timers.register(_watch_start, first_interval=0.25)
    return _starting


def _watch_start() -> float | None:
    """Timer: redraw the sidebar once the background start/check has its answer."""
    if starting():
        return 0.25
    _redraw_panels()
    return None


def starting() -> bool:
    """Whether a backend start or check is running on a worker thread."""
    return _starting is not None and not _starting.done()


def _pool() -> ThreadPoolExecutor:
    global _workers
    if _workers is None:
        _workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="orbitex")
    return _workers


def _redraw_panels() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in (wm.windows if wm else ()):
        for area in (window.screen.areas if window.screen else ()):
            if area.type == "VIEW_3D":
                area.tag_redraw()


def _not_on_a_worker(job: Job) -> None:
    raise RuntimeError("results are applied on the main thread")


def _network_step(entry: Tracked, config: BackendConfig | None) -> None:
    """One submit/poll/download step on a worker thread (connecting first for a job that waits on
    a starting backend). Never touches bpy."""
    if entry.client is None:
        if entry.job.cancel_requested:
            entry.job.fail(NOT_SUBMITTED, "cancelled")
            return
        try:
            entry.client = connect_with(config) if config is not None else None
        except BackendError as exc:
            entry.job.fail(f"Orbitex backend unavailable: {exc}")
            return
        if entry.client is None:
            entry.job.fail("no backend to submit to")
            return
    step(entry.job, entry.client, _not_on_a_worker)


def tick() -> float | None:
    """The timer body: network steps of active jobs go to worker threads (one at a time per job);
    results are applied here, on the main thread, each one undo step. Keeps running while any job
    is active."""
    config = None
    for entry in board.active():
        job = entry.job
        future = _in_flight.get(job.id)
        if future is not None and not future.done():
            continue
        _in_flight.pop(job.id, None)
        if job.state == "applying":
            step(job, entry.client, entry.apply)
            if job.state == "done":
                scene_io.push_undo(f"Orbitex {job.type} result")
        elif job.active:
            if entry.client is None and config is None:
                config = backend_config()
            _in_flight[job.id] = _pool().submit(_network_step, entry, config)
    _redraw_panels()
    return TIMER_INTERVAL_S if board.any_active() else None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        # persistent: jobs keep being stepped when another .blend is opened meanwhile
        bpy.app.timers.register(tick, first_interval=TIMER_INTERVAL_S, persistent=True)


def track(job: Job, client: BackendClient | None, apply: Apply) -> Job:
    """Put `job` on the board; the timer steps it. Without a client (the local backend is still
    starting) the job is submitted from a worker thread once the backend answers."""
    board.add(job, client, apply)
    if job.active:
        ensure_timer()
    return job


def cancel(job_id: str) -> Job | None:
    """Main thread: ask a job of the board to stop, without waiting on the network. The backend is
    told by the job's next network step on a worker thread (tick()); a job never submitted, with no
    submit in flight, ends here. None when the board has no such job."""
    entry = board.get(job_id)
    if entry is None:
        return None
    request_cancel(entry.job)
    future = _in_flight.get(job_id)
    if entry.job.state == "new" and (future is None or future.done()):
        entry.job.fail(NOT_SUBMITTED, "cancelled")
    return entry.job


def shutdown() -> None:
    """Stop the timer, the worker threads and the local backend; forget jobs and their folders."""
    global _workers, _starting
    for timer in (tick, _watch_start):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    if _workers is not None:
        _workers.shutdown(wait=True, cancel_futures=True)  # a step in flight ends within its HTTP timeout
        _workers = None
    _in_flight.clear()
    _starting = None
    stop_local_backend()
    board.clear()
    atexit.unregister(stop_local_backend)


def startup() -> None:
    # Blender does not unregister add-ons when it quits: make sure the local backend ends with it.
    atexit.register(stop_local_backend)
