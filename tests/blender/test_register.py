"""register()/unregister() leave nothing behind: classes, timers, handlers, the local backend."""
from __future__ import annotations

import bpy

from orbitex_testing import PACKAGE, enabled_addon, import_addon

OPERATORS = ("render_orbit_preview", "cancel_job", "clear_jobs", "backend_start", "backend_stop")
PANELS = ("ORBITEX_PT_jobs", "ORBITEX_PT_preview")


def _handler_counts() -> dict[str, int]:
    return {name: len(getattr(bpy.app.handlers, name)) for name in dir(bpy.app.handlers)
            if isinstance(getattr(bpy.app.handlers, name), list)}


def _orbitex_operators() -> set[str]:
    return {name for name in dir(bpy.ops.orbitex) if not name.startswith("_")}


def test_register_unregister_twice_leaves_nothing_behind():
    orbitex = import_addon()
    handlers = _handler_counts()
    for _ in range(2):
        with enabled_addon():
            from orbitex.addon import session

            assert _orbitex_operators() >= set(OPERATORS)
            assert all(hasattr(bpy.types, name) for name in PANELS)
            prefs = bpy.context.preferences.addons[PACKAGE].preferences
            assert type(prefs).bl_idname == PACKAGE == orbitex.__name__
            assert prefs.backend_mode == "LOCAL" and prefs.port == 0
            session.ensure_timer()  # what a submitted job does
            assert bpy.app.timers.is_registered(session.tick)
        assert PACKAGE not in bpy.context.preferences.addons
        assert not (_orbitex_operators() & set(OPERATORS))
        assert not any(hasattr(bpy.types, name) for name in PANELS)
        assert not bpy.app.timers.is_registered(session.tick)
        assert session.local_backend() is None and session.board.jobs() == []
        assert _handler_counts() == handlers


def test_preferences_say_what_is_wrong(tmp_path):
    with enabled_addon():
        prefs = bpy.context.preferences.addons[PACKAGE].preferences
        prefs.backend_python = ""
        assert "Backend Python is not set" in prefs.problems()[0]
        prefs.backend_python = str(tmp_path / "nope" / "python")
        assert prefs.problems() == [f"Backend Python {str(tmp_path / 'nope' / 'python')!r} does not exist"]
        prefs.backend_python = str(tmp_path)
        assert "is a folder" in prefs.problems()[0]
        plain = tmp_path / "python"
        plain.write_text("")
        prefs.backend_python = str(plain)
        assert "is not executable" in prefs.problems()[0]
        plain.chmod(0o755)
        assert prefs.problems() == []

        prefs.backend_mode = "REMOTE"
        prefs.remote_url, prefs.remote_token = "gpu-box:8000", "t"
        assert "must start with http:// or https://" in prefs.problems()[0]
        prefs.remote_url = "http://gpu-box:99999"
        assert "invalid port" in prefs.problems()[0]
        prefs.remote_url, prefs.remote_token = "http://gpu-box:8000", ""
        assert prefs.problems() == ["Token is not set: copy it from <data>/token on the backend machine"]
        prefs.remote_token = "t"
        assert prefs.problems() == []
