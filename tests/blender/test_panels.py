"""The Jobs panel's draw code, run against a recording layout that checks every call against
Blender's real UILayout API (function names, keyword names, icon names), since bpy as a module
draws no UI."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import bpy
import pytest

from orbitex_testing import enabled_addon

UI = bpy.types.UILayout.bl_rna.functions
ICONS = set(UI["label"].parameters["icon"].enum_items.keys())


class RecordingLayout:
    """Stands in for bpy.types.UILayout: records calls, refuses anything the real one would."""

    def __init__(self, log: list, depth: int = 0) -> None:
        self._log, self._depth = log, depth
        self.alert = False

    def __getattr__(self, name: str):
        if name not in UI:
            raise AttributeError(f"UILayout has no function {name!r}")
        params = {p.identifier for p in UI[name].parameters}

        def call(*args, **kwargs):
            unknown = set(kwargs) - params
            assert not unknown, f"UILayout.{name}() has no parameter(s) {unknown}"
            if "icon" in kwargs:
                assert kwargs["icon"] in ICONS, f"unknown icon {kwargs['icon']!r}"
            self._log.append((self._depth, name, args, kwargs, self.alert))
            if name == "operator":
                assert args[0] in ("orbitex.cancel_job", "orbitex.clear_jobs", "orbitex.render_orbit_preview")
                return SimpleNamespace()
            if name in ("row", "column", "box", "split", "column_flow", "grid_flow"):
                return RecordingLayout(self._log, self._depth + 1)
            return None

        return call


@pytest.fixture(scope="module")
def addon():
    with enabled_addon() as module:
        yield module


def _draw(panel_cls, width: int = 300) -> list:
    log: list = []
    panel = SimpleNamespace(layout=RecordingLayout(log))
    context = SimpleNamespace(region=SimpleNamespace(width=width), active_object=None)
    panel_cls.draw(panel, context)
    return log


def test_jobs_panel_shows_rows_progress_cancel_and_full_messages(addon, tmp_path):
    from orbitex.addon import session
    from orbitex.addon.client import BackendClient
    from orbitex.addon.jobs import Job
    from orbitex.panels.jobs import ORBITEX_PT_jobs

    assert ORBITEX_PT_jobs.bl_category == "Orbitex" and ORBITEX_PT_jobs.bl_space_type == "VIEW_3D"
    assert not [call for call in _draw(ORBITEX_PT_jobs) if call[1] == "progress"]  # empty board

    client = BackendClient("http://127.0.0.1:9")
    running = Job("render-orbit", {}, {}, "Suzanne", Path(tmp_path / "a"), state="running", progress=0.4,
                  stage="rasterizing", backend_id="b1")
    long_message = ("mesh.glb: the mesh has no triangles (it holds only points or lines); "
                    "export a mesh with faces and try again")
    failed = Job("render-orbit", {}, {}, "Points", Path(tmp_path / "b"), state="failed", message=long_message)
    session.board.add(running, client, lambda job: None)
    session.board.add(failed, client, lambda job: None)
    try:
        log = _draw(ORBITEX_PT_jobs, width=260)
    finally:
        session.board.clear()
    labels = [call[3].get("text", "") for call in log if call[1] == "label"]
    assert "Suzanne · render-orbit" in labels and "Points · render-orbit" in labels
    progress = [call[3] for call in log if call[1] == "progress"]
    assert progress == [{"factor": pytest.approx(0.4), "type": "BAR", "text": "rasterizing 40%"}]
    cancels = [call for call in log if call[1] == "operator" and call[2][0] == "orbitex.cancel_job"]
    assert len(cancels) == 1  # only the active job can be cancelled
    # The failure message is there in full, wrapped over several alert lines.
    message_lines = [call[3]["text"] for call in log if call[1] == "label" and call[4]]
    assert len(message_lines) > 1 and " ".join(message_lines) == long_message
    assert ("orbitex.clear_jobs",) in [call[2] for call in log if call[1] == "operator"]


def test_jobs_panel_shows_a_cancel_in_progress_and_a_refused_one(addon, tmp_path):
    from orbitex.addon import session
    from orbitex.addon.client import BackendClient
    from orbitex.addon.jobs import Job
    from orbitex.panels.jobs import ORBITEX_PT_jobs

    client = BackendClient("http://127.0.0.1:9")
    asked = Job("texture", {}, {}, "Asked", Path(tmp_path / "a"), state="running", backend_id="b1",
                cancel_requested=True)
    refused = Job("texture", {}, {}, "Refused", Path(tmp_path / "b"), state="running", backend_id="b2",
                  cancel_error="cancel failed: HTTP 500 from the backend")
    session.board.add(asked, client, lambda job: None)
    session.board.add(refused, client, lambda job: None)
    try:
        log = _draw(ORBITEX_PT_jobs)
    finally:
        session.board.clear()
    labels = [call[3].get("text", "") for call in log if call[1] == "label"]
    assert labels.count("cancelling") == 1 and labels.count("running") == 1
    cancels = [call for call in log if call[1] == "operator" and call[2][0] == "orbitex.cancel_job"]
    assert len(cancels) == 1  # no second cancel while one is on its way; a refused one can be asked again
    assert " ".join(call[3]["text"] for call in log if call[1] == "label" and call[4]) == refused.cancel_error


def test_preview_panel_draws(addon):
    from orbitex.panels.jobs import ORBITEX_PT_preview

    log = _draw(ORBITEX_PT_preview)
    assert [call[2][0] for call in log if call[1] == "operator"] == ["orbitex.render_orbit_preview"]
