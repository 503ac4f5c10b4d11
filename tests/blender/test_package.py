"""`python build.py package` makes a zip that Blender's own validator accepts, that installs with
bpy.ops.extensions.package_install_files, and whose installed copy can start the local backend."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from orbitex_testing import ROOT, backend_python

INSTALL_SCRIPT = r'''
import json, os, sys
import bpy, addon_utils

zip_path, data_dir, python = sys.argv[1], sys.argv[2], sys.argv[3]
report = {"repo_dir": bpy.utils.user_resource("EXTENSIONS", path="user_default")}
result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
module = "bl_ext.user_default.orbitex"
report["result"] = sorted(result)
report["enabled"] = module in bpy.context.preferences.addons
report["operators"] = sorted(n for n in dir(bpy.ops.orbitex) if not n.startswith("_"))
if python:
    prefs = bpy.context.preferences.addons[module].preferences
    prefs.backend_python, prefs.data_dir = python, data_dir
    report["start"] = sorted(bpy.ops.orbitex.backend_start())
    session = sys.modules[module + ".addon.session"]
    local = session.local_backend()
    report["pid"] = local.process.pid
    report["backend_cwd"] = os.readlink(f"/proc/{local.process.pid}/cwd")
    report["health"] = local.client().health()
# bpy as a module hangs at exit while add-on classes or timers are registered: disable first.
addon_utils.disable(module, default_set=True)
report["enabled_after_disable"] = module in bpy.context.preferences.addons
print("REPORT " + json.dumps(report))
'''


@pytest.fixture(scope="module")
def package_zip() -> Path:
    proc = subprocess.run([sys.executable, str(ROOT / "build.py"), "package"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success parsing TOML" in proc.stdout  # Blender's validator ran on the zip
    built = Path(proc.stdout.strip().splitlines()[-1].split("package: ", 1)[1])
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    assert built == ROOT / "dist" / f"orbitex-{manifest['version']}.zip" and built.is_file()
    return built


def test_zip_holds_the_extension_and_the_backend_sources_only(package_zip):
    names = zipfile.ZipFile(package_zip).namelist()
    assert {"blender_manifest.toml", "__init__.py", "addon/client.py", "addon/jobs.py",
            "operators/render_orbit_preview.py", "panels/jobs.py",
            "backend/__main__.py", "backend/service/server.py"} <= set(names)
    banned = ("tests/", "bench/", ".venv/", "out/", "dist/", ".ci/", ".git/", "samples/")
    assert not [n for n in names if n.startswith(banned) or "__pycache__" in n or n.endswith(".pyc")]
    assert "build.py" not in names


def test_installs_enables_and_starts_the_backend_from_the_installed_copy(package_zip, tmp_path):
    python = backend_python() or ""
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender-user")}
    proc = subprocess.run([sys.executable, "-c", INSTALL_SCRIPT, str(package_zip), str(tmp_path / "data"), python],
                          env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])
    installed = Path(report["repo_dir"]) / "orbitex"
    assert installed.is_relative_to(tmp_path)
    assert (installed / "blender_manifest.toml").is_file() and (installed / "backend" / "cli.py").is_file()
    assert report["result"] == ["FINISHED"] and report["enabled"]
    assert "render_orbit_preview" in report["operators"] and "cancel_job" in report["operators"]
    assert report["enabled_after_disable"] is False
    if python:
        assert report["start"] == ["FINISHED"]
        assert Path(report["backend_cwd"]) == installed  # the backend ran from the installed sources
        assert "render-orbit" in report["health"]["job_types"]
        assert not Path(f"/proc/{report['pid']}").exists()  # disabling stopped it
