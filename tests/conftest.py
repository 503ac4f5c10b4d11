"""Shared by the backend and the Blender tests: every glTF/GLB a test writes passes the Khronos
glTF validator (npm gltf-validator, installed by `build.py setup`) with zero errors and warnings.

After each test, every .glb/.gltf under pytest's base temp folder that is new or changed since the
previous test is validated in one node call. A test that writes broken glTF on purpose (bad-input tests) is
marked `@pytest.mark.writes_invalid_gltf`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "tools" / "validate_gltf.js"
VALIDATOR_MODULES = ROOT / ".venv" / "gltf-validator" / "node_modules"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "writes_invalid_gltf: the test writes broken glTF on purpose")


def validate_gltf(files: list[Path]) -> list[dict]:
    """The validator's verdict per file: {file, errors, warnings, messages}."""
    node = shutil.which("node")
    if node is None or not (VALIDATOR_MODULES / "gltf-validator").is_dir():
        raise RuntimeError(f"the Khronos glTF validator is not installed ({VALIDATOR_MODULES}): run `python3 build.py setup`")
    proc = subprocess.run([node, str(SCRIPT), *map(str, files)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NODE_PATH": str(VALIDATOR_MODULES)})
    if proc.returncode != 0:
        raise RuntimeError(f"gltf-validator failed: {proc.stderr.strip()}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


_seen: dict[Path, float] = {}  # glTF files already judged -> their mtime then


def _new_gltf(base: Path) -> list[Path]:
    found = []
    for dirpath, _, names in os.walk(base):
        for name in names:
            if name.lower().endswith((".glb", ".gltf")):
                path = Path(dirpath) / name
                mtime = path.stat().st_mtime
                if _seen.get(path) != mtime:
                    _seen[path] = mtime
                    found.append(path)
    return sorted(found)


@pytest.fixture(autouse=True)
def _written_gltf_is_valid(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield
    written = _new_gltf(tmp_path_factory.getbasetemp())
    if not written or request.node.get_closest_marker("writes_invalid_gltf"):
        return
    bad = [r for r in validate_gltf(sorted(written)) if r["errors"] or r["warnings"]]
    assert not bad, "glTF validator: " + "; ".join(f"{r['file']}: {r['messages']}" for r in bad)
