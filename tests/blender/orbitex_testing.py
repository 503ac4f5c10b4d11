"""Helpers for the Blender-side tests (bpy wheel, no Blender executable).

The add-on is imported as the package `orbitex` from a temporary folder holding a symlink
`orbitex` -> repository root, so its relative imports work as they do in an installed extension.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "orbitex"
_link_dir: Path | None = None


def import_addon() -> ModuleType:
    """The repository root imported as the package `orbitex` (once per process)."""
    global _link_dir
    if _link_dir is None:
        _link_dir = Path(tempfile.mkdtemp(prefix="orbitex-addon-"))
        (_link_dir / PACKAGE).symlink_to(ROOT, target_is_directory=True)
        atexit.register(shutil.rmtree, _link_dir, True)  # removes the link, not the repository
        sys.path.insert(0, str(_link_dir))
    import importlib

    return importlib.import_module(PACKAGE)


def _raise(exc: BaseException) -> None:
    raise exc


@contextlib.contextmanager
def enabled_addon() -> Iterator[ModuleType]:
    """Enable the add-on the way Blender does (so its preferences exist); disable it afterwards."""
    import addon_utils

    import_addon()
    module = addon_utils.enable(PACKAGE, default_set=True, handle_error=_raise)
    assert module is not None, "addon_utils.enable returned nothing"
    try:
        yield module
    finally:
        addon_utils.disable(PACKAGE, default_set=True, handle_error=_raise)


def prefs():
    import bpy

    return bpy.context.preferences.addons[PACKAGE].preferences


def backend_python() -> str | None:
    """The backend interpreter: $ORBITEX_BACKEND_PYTHON (set by build.py test) or the repo's venv."""
    env = os.environ.get("ORBITEX_BACKEND_PYTHON")
    if env:
        return env
    default = ROOT / ".venv" / "backend" / "bin" / "python"
    return str(default) if default.exists() else None


# for the modules whose tests talk to a real local backend (`pytestmark = NEEDS_BACKEND`)
NEEDS_BACKEND = pytest.mark.skipif(backend_python() is None,
                                   reason="no backend environment: set ORBITEX_BACKEND_PYTHON or run `python build.py setup`")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state where /proc exists.
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False
    return True


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is `pid` (read from /proc, so no procps needed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def new_mesh_object(name: str, with_subdivision: bool = True):
    """A monkey (optionally with a Subdivision modifier) linked to the scene, active and selected."""
    import bpy

    bpy.ops.mesh.primitive_monkey_add(size=1.0)
    obj = bpy.context.active_object
    obj.name = name
    if with_subdivision:
        mod = obj.modifiers.new("Subdivision", "SUBSURF")
        mod.levels = 1
    return obj


@contextlib.contextmanager
def backend_session(data_dir: Path) -> Iterator:
    """The add-on enabled with a local backend (started on first use); yields orbitex.addon.session.
    On exit the add-on is disabled, and the backend it started must be gone."""
    with enabled_addon():
        from orbitex.addon import session

        p = prefs()
        p.backend_mode, p.backend_python, p.data_dir = "LOCAL", backend_python(), str(data_dir)
        yield session
        local = session.local_backend()
    assert local is None or not pid_alive(local.process.pid)
