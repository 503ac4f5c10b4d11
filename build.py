#!/usr/bin/env python3
"""Orbitex's one entry point for people and CI (standard library only).

  python build.py setup     install what is missing (apt libraries, .venv/backend, .venv/blender,
                            .venv/diffsynth)
  python build.py demo      setup, then the main job on the bundled sample; prints where outputs are
  python build.py test      setup, then the whole test suite (backend, then Blender/bpy)
  python build.py package   build dist/orbitex-<version>.zip and validate it with Blender's validator
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENVS = ROOT / ".venv"
BACKEND_VENV = VENVS / "backend"
BLENDER_VENV = VENVS / "blender"
DIFFSYNTH_VENV = VENVS / "diffsynth"  # OrbitPainter's DiffSynth (needs torchvision), run as a subprocess
TORCH = "torch==2.13.0"
BPY = "bpy==4.5.*"
BLENDER_REQUIREMENTS = [BPY, "pytest"]
# The Khronos glTF validator (npm), run by the tests on every GLB they write (tests/conftest.py).
GLTF_VALIDATOR = "gltf-validator@2.0.0-dev.3.10"
GLTF_VALIDATOR_DIR = VENVS / "gltf-validator"
# Shared libraries the bpy wheel loads, plus Mesa's EGL for headless moderngl rendering.
APT_PACKAGES = ["libxrender1", "libxi6", "libxkbcommon0", "libsm6", "libxxf86vm1", "libxfixes3",
                "libgl1", "libegl1", "libegl-mesa0", "libgl1-mesa-dri", "libgomp1"]


def log(message: str) -> None:
    print(f"[build] {message}", flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    log(" ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_apt() -> None:
    missing = [p for p in APT_PACKAGES
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        log(f"missing system libraries {' '.join(missing)}: install them with your package manager "
            "(as root: apt-get install -y " + " ".join(missing) + ")")
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def python311() -> str:
    for candidate in ("python3.11", "python3"):
        exe = shutil.which(candidate)
        if exe and subprocess.run([exe, "-c", "import sys; assert sys.version_info[:2] == (3, 11)"],
                                  capture_output=True).returncode == 0:
            return exe
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    raise SystemExit("Python 3.11 is needed (the bpy 4.5 wheel is built for it); install python3.11")


def cuda_torch_present(python: str) -> bool:
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def ensure_venv(venv: Path, requirements: list[str], system_site: bool = False) -> Path:
    """Create `venv` and install `requirements` unless the same list was installed before."""
    python = venv_python(venv)
    stamp = venv / ".orbitex-installed"
    digest = hashlib.sha256(json.dumps(requirements).encode()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    if not python.exists():
        run([python311(), "-m", "venv", *(["--system-site-packages"] if system_site else []), venv])
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements])
    stamp.write_text(digest)
    return python


def ensure_gltf_validator() -> None:
    stamp = GLTF_VALIDATOR_DIR / ".orbitex-installed"
    if stamp.exists() and stamp.read_text() == GLTF_VALIDATOR:
        return
    if shutil.which("npm") is None:
        raise SystemExit("npm (Node.js) is needed for the glTF validator the tests run: apt-get install -y nodejs npm")
    GLTF_VALIDATOR_DIR.mkdir(parents=True, exist_ok=True)
    run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", GLTF_VALIDATOR_DIR, GLTF_VALIDATOR])
    stamp.write_text(GLTF_VALIDATOR)


def read_requirements(path: Path) -> list[str]:
    return [r for r in (line.split("#")[0].strip() for line in path.read_text().splitlines()) if r]


def setup() -> None:
    ensure_apt()
    base = python311()
    # A machine that already has a CUDA build of torch keeps it; elsewhere the CPU 2.13.0 build.
    cuda = cuda_torch_present(base)
    backend_reqs = [line.split("#")[0].strip() for line in (ROOT / "backend/requirements.txt").read_text().splitlines()]
    backend_reqs = [r for r in backend_reqs if r]
    ensure_venv(BACKEND_VENV, ([] if cuda else [TORCH]) + backend_reqs, system_site=cuda)
    ensure_venv(BLENDER_VENV, BLENDER_REQUIREMENTS)
    ensure_gltf_validator()
    # the CPU splat rasterizer's numba kernels: compiled once here, cached beside their module
    run([venv_python(BACKEND_VENV), "-c", "from backend.splats.raster_cpu import warm_up; warm_up()"], cwd=ROOT)
    ensure_venv(DIFFSYNTH_VENV, read_requirements(ROOT / "backend/requirements-diffsynth.txt"))
    log(f"backend python: {venv_python(BACKEND_VENV)}; Blender-side python (bpy): {venv_python(BLENDER_VENV)}")


def demo() -> None:
    setup()
    out = ROOT / "out" / "demo"
    sample, reference = ROOT / "samples" / "vase.glb", ROOT / "samples" / "vase_reference.png"
    glb = out / "vase_textured.glb"
    run([venv_python(BACKEND_VENV), "-m", "backend", "texture", sample, reference, "--out", glb,
         "--generator", "projection", "--frames", "61", "--size", "512"], cwd=ROOT)
    files = out / "vase_textured_files"
    log(f"demo: textured mesh {glb}; turntable {files / 'turntable.png'} and {files / 'turntable.mp4'}; "
        f"texture {files / 'texture.png'}; generated orbit views {files / 'views'}")


def _pytest(python: Path, tests: str, report: Path, env: dict[str, str]) -> tuple[int, dict[str, int]]:
    proc = subprocess.run([str(python), "-m", "pytest", tests, "-q", "-rs", f"--junitxml={report}"], cwd=ROOT, env=env)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    if report.exists():
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        total = int(suite.get("tests", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        counts = {"passed": total - failed - int(suite.get("skipped", 0)), "failed": failed,
                  "skipped": int(suite.get("skipped", 0))}
    return proc.returncode, counts


def test() -> int:
    setup()
    env = {**os.environ, "ORBITEX_BACKEND_PYTHON": str(venv_python(BACKEND_VENV)), "PYTHONUNBUFFERED": "1"}
    reports = ROOT / "out" / "test-reports"
    reports.mkdir(parents=True, exist_ok=True)
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    worst = 0
    for python, tests in ((venv_python(BACKEND_VENV), "tests/backend"), (venv_python(BLENDER_VENV), "tests/blender")):
        code, counts = _pytest(python, tests, reports / f"{Path(tests).name}.xml", env)
        worst = worst or (code if code not in (0, 5) else 0)
        if code == 5 or counts["passed"] + counts["failed"] == 0:
            log(f"{tests}: no tests ran")
            worst = worst or 1
        for key in totals:
            totals[key] += counts[key]
    print(f"total: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped", flush=True)
    return worst


def blender_extension_tool() -> Path:
    """Blender's own extension tool (`build`, `validate`), shipped inside the bpy wheel."""
    found = sorted(BLENDER_VENV.glob("lib/python3*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise SystemExit(f"Blender's extension tool (bl_pkg/cli/blender_ext.py) is not in {BLENDER_VENV}; "
                         "run `python build.py setup`")
    return found[-1]


def package() -> Path:
    """dist/orbitex-<version>.zip, built and validated by Blender's extension tool."""
    python = ensure_venv(BLENDER_VENV, BLENDER_REQUIREMENTS)
    tool = blender_extension_tool()
    manifest = (ROOT / "blender_manifest.toml").read_text()
    fields = dict(re.findall(r'^(id|version)\s*=\s*"([^"]+)"', manifest, re.M))
    out = ROOT / "dist" / f"{fields['id']}-{fields['version']}.zip"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    run([python, tool, "build", "--source-dir", ROOT, "--output-filepath", out])
    run([python, tool, "validate", out])
    log(f"package: {out}")
    return out


def main(argv: list[str]) -> int:
    commands = {"setup": setup, "demo": demo, "test": test, "package": package}
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__)
        return 2
    result = commands[argv[0]]()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
