"""No usable backend: the operator reports an error and the scene is left exactly as it was."""
from __future__ import annotations

import socket
import sys

import bpy
import pytest

from orbitex_testing import enabled_addon, new_mesh_object, prefs


def _scene_state() -> dict:
    return {
        "images": sorted(i.name for i in bpy.data.images),
        "objects": sorted(o.name for o in bpy.data.objects),
        "meshes": sorted(m.name for m in bpy.data.meshes),
        "selected": sorted(o.name for o in bpy.context.view_layer.objects if o.select_get()),
        "active": bpy.context.view_layer.objects.active.name,
    }


@pytest.fixture(scope="module")
def addon():
    with enabled_addon() as module:
        yield module


@pytest.fixture()
def mesh_object(addon):
    obj = new_mesh_object("DownTest")
    yield obj
    bpy.data.objects.remove(obj)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_expecting_error(match: str) -> None:
    from orbitex.addon import session

    before, jobs_before = _scene_state(), list(session.board.jobs())
    with pytest.raises(RuntimeError, match=match):
        bpy.ops.orbitex.render_orbit_preview(frames=2, size=32)
    assert _scene_state() == before
    assert session.board.jobs() == jobs_before


def test_remote_backend_not_listening(mesh_object):
    p = prefs()
    p.backend_mode, p.remote_url, p.remote_token = "REMOTE", f"http://127.0.0.1:{_free_port()}", "token"
    _run_expecting_error(r"Orbitex backend unavailable: cannot reach the Orbitex backend at http://127\.0\.0\.1")


def test_remote_url_invalid(mesh_object):
    p = prefs()
    p.backend_mode, p.remote_url = "REMOTE", "ftp://example.org"
    _run_expecting_error("must start with http:// or https://")


def test_local_interpreter_missing(mesh_object, tmp_path):
    p = prefs()
    p.backend_mode, p.backend_python, p.data_dir = "LOCAL", str(tmp_path / "missing" / "python"), str(tmp_path / "d")
    _run_expecting_error("missing/python' does not exist")


def test_local_interpreter_without_backend_dependencies(mesh_object, tmp_path):
    # This test environment's own python has bpy but none of the backend's packages: the backend
    # exits at once and the error carries its last output.
    p = prefs()
    p.backend_mode, p.backend_python, p.data_dir = "LOCAL", sys.executable, str(tmp_path / "d")
    _run_expecting_error(r"(?s)exited \(code 1\) before it was ready.*No module named")
