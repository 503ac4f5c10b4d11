"""The sidebar sections of the texturing operators (Backend, Texture, Bake from Cameras, Batch)
and the Jobs list's Apply / Files buttons, drawn against a layout that checks every call against
Blender's real UILayout API and every operator property against the operator's own."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import bpy
import pytest

from orbitex_testing import enabled_addon, prefs
from texturing_testing import draw_panel


@pytest.fixture(scope="module")
def addon():
    with enabled_addon() as module:
        yield module


def _operators(log) -> dict:  # type: ignore[no-untyped-def]
    """idname -> the properties the panel set on its button (the last button of that operator)."""
    return {call[2][0]: None for call in log if call[1] == "operator"}


def _labels(log) -> list[str]:  # type: ignore[no-untyped-def]
    return [call[3].get("text", "") for call in log if call[1] == "label"]


def test_texture_section_passes_its_settings_to_the_operator(addon, monkeypatch):
    from orbitex.panels import texturing
    from orbitex.panels.settings import copy_options

    s = bpy.context.scene.orbitex_texturing
    image = bpy.data.images.new("Panel Ref", 4, 4)
    s.image, s.generator, s.frames, s.texture_size, s.uv_mode = image, "projection", 12, 512, "NEW"
    buttons = []
    monkeypatch.setattr(texturing, "copy_options",
                        lambda settings, op, mixins: (copy_options(settings, op, mixins), buttons.append(op)))
    log = draw_panel(texturing.ORBITEX_PT_texture)
    assert "orbitex.texture_selected" in _operators(log)
    values = buttons[-1].values
    assert values["image_name"] == "Panel Ref" and values["frames"] == 12 and values["texture_size"] == 512
    assert values["uv_mode"] == "NEW" and values["generator"] == "projection"
    s.image_path = "/tmp/some.png"  # a file wins over the datablock
    draw_panel(texturing.ORBITEX_PT_texture)
    assert buttons[-1].values["image_path"] == "/tmp/some.png" and buttons[-1].values["image_name"] == ""
    s.image_path = ""
    bpy.data.images.remove(image)


def test_bake_and_batch_sections_draw(addon, monkeypatch):
    from orbitex.operators import batch_collection
    from orbitex.operators.batch_collection import Batch
    from orbitex.panels import texturing

    s = bpy.context.scene.orbitex_texturing
    s.uv_mode = "EXISTING"  # draws the UV map name field
    for source in ("CAMERAS", "IMAGE_FOLDER", "VIEW_SET"):
        s.source = source
        log = draw_panel(texturing.ORBITEX_PT_bake)
        assert "orbitex.bake_from_cameras" in _operators(log)
        assert ("uv_map" in [c[2][1] for c in log if c[1] == "prop"])
    collection = bpy.data.collections.new("Panel Batch")
    s.batch_collection, s.batch_mode = collection, "BAKE"
    monkeypatch.setattr(batch_collection, "batches", [Batch("Panel Batch", "bake", not_submitted=[("A", "why")],
                                                            skipped=[("Cam", "not a mesh (camera)")])])
    monkeypatch.setattr(texturing, "batches", batch_collection.batches)
    log = draw_panel(texturing.ORBITEX_PT_batch, width=600)
    assert "orbitex.batch_collection" in _operators(log)
    assert [c[3]["factor"] for c in log if c[1] == "progress"] == [1.0]
    assert " ".join(c[3]["text"] for c in log if c[1] == "label" and c[4]) == \
        "0 baked; 1 failed: A: why; 1 skipped: Cam (not a mesh (camera))"
    bpy.data.collections.remove(collection)


def test_backend_section_says_local_stopped_and_remote_unreachable(addon):
    from orbitex.addon import session
    from orbitex.panels import texturing

    p = prefs()
    p.backend_mode = "LOCAL"
    log = draw_panel(texturing.ORBITEX_PT_backend)
    assert "Local: stopped" in _labels(log) and "orbitex.backend_start" in _operators(log)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    p.backend_mode, p.remote_url, p.remote_token = "REMOTE", f"http://127.0.0.1:{port}", "t"
    try:
        log = draw_panel(texturing.ORBITEX_PT_backend)  # draw() itself never checks
        assert "Remote: not checked yet" in _labels(log) and not session.starting()
        session.start_in_background()  # what the Check button does: the check runs on a worker thread
        deadline = time.monotonic() + 10
        while session.starting():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        log = draw_panel(texturing.ORBITEX_PT_backend, width=600)
        assert "Remote: unreachable" in _labels(log)
        assert any("cannot reach the Orbitex backend" in text for text in _labels(log))
        p.remote_url = "ftp://nowhere"
        log = draw_panel(texturing.ORBITEX_PT_backend, width=600)
        assert "Remote: not set up" in _labels(log)
    finally:
        p.backend_mode = "LOCAL"


def test_remote_backend_respects_online_access(addon):
    """With Blender's "Allow Online Access" off, a remote backend on another machine is never
    contacted and the panel says why; a loopback URL (a tunnel) is no online access."""
    from orbitex.addon import session
    from orbitex.addon.client import BackendError
    from orbitex.panels import texturing

    system = bpy.context.preferences.system
    p, online = prefs(), system.use_online_access
    p.backend_mode, p.remote_url, p.remote_token = "REMOTE", "http://gpu-box.example:8000", "t"
    try:
        system.use_online_access = False
        log = draw_panel(texturing.ORBITEX_PT_backend, width=900)
        assert "Remote: online access is off" in _labels(log)
        assert any("Allow Online Access" in text for text in _labels(log))
        with pytest.raises(BackendError, match="online access is off"):
            session.connect()
        p.remote_url = "http://127.0.0.1:9"
        assert "Remote: not checked yet" in _labels(draw_panel(texturing.ORBITEX_PT_backend, width=900))
        with pytest.raises(BackendError, match="cannot reach"):
            session.connect()
    finally:
        system.use_online_access = online
        p.backend_mode = "LOCAL"


def test_jobs_list_offers_apply_and_files_for_a_downloaded_result(addon, tmp_path):
    from orbitex.addon import session
    from orbitex.addon.client import BackendClient
    from orbitex.addon.jobs import Job
    from orbitex.panels.jobs import ORBITEX_PT_jobs

    kept = Job("texture", {}, {}, "Suzanne", Path(tmp_path), state="failed", downloaded={"glb": tmp_path / "a.glb"},
               message="the object 'Suzanne' was renamed to 'Head' since the job was submitted; the result is kept")
    session.board.add(kept, BackendClient("http://127.0.0.1:9"), lambda job: None)
    try:
        log = draw_panel(ORBITEX_PT_jobs, width=900)
    finally:
        session.board.clear()
    assert {"orbitex.apply_result", "orbitex.open_result_folder"} <= set(_operators(log))
    assert any("renamed to 'Head'" in t for t in _labels(log))
