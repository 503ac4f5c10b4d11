"""A real, small refine job through the service: several subject photos by role, result GLB back."""
from __future__ import annotations

import io
import json
from pathlib import Path

from refine_helpers import can_glb, subject_png
from service_helpers import Server


def test_refine_job_with_several_subjects(tmp_path: Path) -> None:
    asset = can_glb(tmp_path / "can.glb").read_bytes()
    subject = subject_png(tmp_path / "subject.png").read_bytes()
    from PIL import Image

    tiny = io.BytesIO()
    Image.new("RGB", (1, 1)).save(tiny, format="PNG")
    params = {"frames": 6, "size": 40, "source_view": "auto", "bake": {"voxel_res": 40}, "anchors": [30, 180]}
    server = Server(tmp_path / "data")
    try:
        job = server.submit_ok(params, files={"asset": ("can.glb", asset), "subject": ("front.png", subject),
                                              "subject_1": ("side.png", subject)}, job_type="refine")
        bad = server.submit_ok(params, files={"asset": ("can.glb", asset), "subject": ("front.png", subject),
                                              "subject_1": ("tiny.png", tiny.getvalue())}, job_type="refine")
        refused = server.submit(params, files={"asset": ("can.glb", asset), "subject_9": ("x.png", subject)},
                                job_type="refine")
        assert refused.status_code == 400 and "subject_9" in refused.text
        done = server.wait(job["id"], ("done", "failed", "cancelled"), timeout=240)
        assert done["state"] == "done", done["message"]
        files = {r["file"]: r for r in done["results"]}
        glb = next(name for name in files if name.endswith(".glb"))
        data = server.client.get(files[glb]["url"]).content
        assert data[:4] == b"glTF"
        report_name = next(name for name in files if name.endswith("report.json"))
        report = json.loads(server.client.get(files[report_name]["url"]).content)
        assert report["source"]["source_view"] == "auto" and report["asset"] == "mesh"
        assert report["params"]["bake"]["voxel_res"] == 40 and report["params"]["bake"]["align"] is False
        schema = server.client.get("/job-types").json()["job_types"]["refine"]["params"]["properties"]
        bake = schema["bake"]["properties"]  # the rebake's own defaults, not BakeParams'
        assert (bake["voxel_res"]["default"], bake["align"]["default"], bake["lock_reference"]["default"]) == (
            128, False, True)
        assert schema["consistency"]["default"] == "none" and set(schema["consistency"]["enum"]) == {"none", "mv-sd"}
        failed = server.wait(bad["id"], ("done", "failed", "cancelled"), timeout=120)
        assert failed["state"] == "failed" and "1x1" in failed["message"], failed["message"]
        assert not server.maps_torch()
    finally:
        server.stop()
