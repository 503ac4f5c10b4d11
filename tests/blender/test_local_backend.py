"""The add-on starts a real local backend (python -m backend serve), checks /health, and stops it
and its worker when the add-on is disabled."""
from __future__ import annotations

import time

import bpy
import pytest

from orbitex_testing import backend_python, child_pids, enabled_addon, pid_alive, prefs

pytestmark = pytest.mark.skipif(backend_python() is None,
                                reason="no backend environment: set ORBITEX_BACKEND_PYTHON or run `python build.py setup`")


def test_start_check_and_stop_with_the_addon(tmp_path):
    data = tmp_path / "data"
    with enabled_addon():
        from orbitex.addon import session

        p = prefs()
        p.backend_mode, p.backend_python, p.data_dir = "LOCAL", backend_python(), str(data)
        assert bpy.ops.orbitex.backend_start() == {"FINISHED"}
        local = session.local_backend()
        assert local is not None and local.url.startswith("http://127.0.0.1:")
        assert local.token == (data / "token").read_text().strip()
        assert (data / "token").stat().st_mode & 0o077 == 0
        health = local.client().health()
        assert "render-orbit" in health["job_types"]
        assert local.client().list_jobs() == []  # the token works
        # A second start with the same settings reuses the running process.
        assert bpy.ops.orbitex.backend_start() == {"FINISHED"}
        assert session.local_backend() is local
        pid = local.process.pid
        deadline = time.monotonic() + 20
        while not (workers := child_pids(pid)):  # the server spawns its worker process
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert pid_alive(pid)
    assert not pid_alive(pid)
    assert not [w for w in workers if pid_alive(w)]  # the worker went with it
    assert session.local_backend() is None


def test_stop_operator_and_restart_on_the_same_data_folder(tmp_path):
    data = tmp_path / "data"
    with enabled_addon():
        from orbitex.addon import session

        p = prefs()
        p.backend_mode, p.backend_python, p.data_dir = "LOCAL", backend_python(), str(data)
        client = session.connect()
        first = session.local_backend()
        assert bpy.ops.orbitex.backend_stop() == {"FINISHED"}
        assert not pid_alive(first.process.pid) and session.local_backend() is None
        again = session.connect()  # next use starts it again, same folder, same token
        assert again.token == client.token and session.local_backend().process.pid != first.process.pid
