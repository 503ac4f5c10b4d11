"""The HTTP process must stay free of torch: the service modules and every registered pipeline
module (imported there for INPUTS and Params) keep heavy imports inside run()."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from service_helpers import REPO

PROBE = """
import json, sys
import backend.service.app, backend.service.server
from backend.service import registry
loaded, absent = [], []
for job_type, module in registry.job_types().items():
    try:
        registry.load(job_type)
        loaded.append(job_type)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        absent.append(job_type)
print(json.dumps({"loaded": loaded, "absent": absent,
                  "heavy": sorted(m for m in ("torch", "cv2", "moderngl", "diffusers") if m in sys.modules)}))
"""


def test_service_and_pipeline_modules_import_without_torch() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["heavy"] == [], f"importing pipeline modules pulled in {report['heavy']} (loaded: {report['loaded']})"
    present = [t for t, m in __import__("backend.pipelines", fromlist=["PIPELINES"]).PIPELINES.items()
               if importlib.util.find_spec(f"backend.pipelines.{m}") is not None]
    assert sorted(report["loaded"]) == sorted(present)


def test_serve_starts_without_importing_pipelines() -> None:
    probe = ("import sys; from backend import cli; import backend.service.server as s; "
             "s.run = lambda args: print(sorted(m for m in sys.modules if m.startswith('backend.pipelines.')))"
             " or 0; cli.main(['serve', '--port', '0'])")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
