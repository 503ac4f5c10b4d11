"""A real, small render-orbit job through the service (worker process, torch rasterizer)."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from service_helpers import Server


def _box_glb() -> bytes:
    import trimesh

    return trimesh.creation.box(extents=(1.0, 0.6, 0.4)).export(file_type="glb")


@pytest.mark.writes_invalid_gltf  # uploads a broken GLB on purpose
def test_render_orbit_job(tmp_path: Path) -> None:
    from backend.pipelines import render_orbit

    role = next(iter(render_orbit.INPUTS))
    server = Server(tmp_path / "data")
    try:
        job = server.submit_ok({"frames": 4, "size": 64}, files={role: ("box.glb", _box_glb())}, job_type="render-orbit")
        bad = server.submit_ok({"frames": 4, "size": 64}, files={role: ("broken.glb", b"glTF not really")},
                               job_type="render-orbit")
        done = server.wait(job["id"], ("done", "failed", "cancelled"), timeout=180)
        assert done["state"] == "done", done["message"]
        files = {r["file"]: r for r in done["results"]}
        pngs = [name for name in files if name.endswith(".png")]
        zips = [name for name in files if name.endswith(".zip")]
        assert pngs and zips, files
        sheet = server.client.get(files[pngs[0]]["url"])
        assert sheet.status_code == 200 and sheet.content[:8] == b"\x89PNG\r\n\x1a\n"
        from PIL import Image

        assert min(Image.open(io.BytesIO(sheet.content)).size) >= 64
        archive = server.client.get(files[zips[0]]["url"])
        with zipfile.ZipFile(io.BytesIO(archive.content)) as viewset:
            transforms_name = next(n for n in viewset.namelist() if n.endswith("transforms.json"))
            transforms = json.loads(viewset.read(transforms_name))
        assert len(transforms["frames"]) >= 4
        failed = server.wait(bad["id"], ("done", "failed", "cancelled"), timeout=120)
        assert failed["state"] == "failed" and failed["message"].startswith("mesh.glb: cannot read the mesh")
        assert not server.maps_torch()  # the torch work happened in the worker process
    finally:
        server.stop()
