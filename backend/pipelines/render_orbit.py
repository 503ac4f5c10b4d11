"""Render a mesh's orbit G-buffers (position, normal, mask) as a view set, videos and a contact sheet.

Ink3D's rig: the mesh is normalized (box centred at the origin, largest side 1), then seen from a
horizontal and a vertical orbit of `frames` views each at `size`^2 pixels; both orbits start at
the same reference view (frame 0, camera on +Z), which is rendered and stored once.

Written into the output folder (a view set, see backend/assets/viewset.py):
  transforms.json         cameras in the mesh FILE's frame (camera-to-world, OpenGL convention);
                          file_path points at the normal frames ("orbitex_render_only": "normal");
                          frames h_0000..h_{N-1} (horizontal) then v_0001..v_{N-1} (vertical);
                          "orbitex_normalization" {center, scale} (x_norm = (x_file - center) * scale)
                          and "orbitex_orbits" (the frame names of each orbit, both from h_0000)
  position/NAME.png       normalized-frame position mapped from [-0.5, 0.5] to [0, 1], black background
  normal/NAME.png         world normals mapped from [-1, 1] to [0, 1], black background
  masks/NAME.png          white where the mesh is
  horizontal_position.mp4, horizontal_normal.mp4, vertical_position.mp4, vertical_normal.mp4
                          H.264 (yuv420p), one frame per view of that orbit, frame 0 first
  contact_sheet.png       normals and positions of 8 views per orbit
  viewset.zip             all of the above, for download
"""
from __future__ import annotations

import argparse
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError
from ..progress import Progress, sub_progress

NAME = "render-orbit"
INPUTS = {"mesh": "the mesh to render (GLB/glTF/OBJ/PLY)"}
OPTIONAL_INPUTS: dict[str, str] = {}

FPS = 24
CHUNK = 8  # views rendered at once: G-buffers of the whole orbit are never held together
SHEET_COLUMNS = 8


@dataclass
class Params:
    frames: int = 61
    size: int = 512
    rasterizer: Literal["auto", "moderngl", "torch", "nvdiffrast"] = "auto"

    def __post_init__(self) -> None:
        if not 1 <= self.frames <= 720:
            raise InputError(f"frames must be between 1 and 720 per orbit (got {self.frames})")
        if not 16 <= self.size <= 4096:
            raise InputError(f"size must be between 16 and 4096 pixels (got {self.size})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", help="mesh file (GLB/glTF/OBJ/PLY)")
    parser.add_argument("--out", required=True, help="output folder (the view set)")
    parser.add_argument("--frames", type=int, help="views per orbit (default 61)")
    parser.add_argument("--size", type=int, help="image size in pixels (default 512)")
    parser.add_argument("--rasterizer", choices=["auto", "moderngl", "torch", "nvdiffrast"],
                        help="G-buffer rasterizer (default auto: nvdiffrast on CUDA, else moderngl, else torch)")


def _check_out_dir(out_dir: Path) -> None:
    """Write into an empty folder or over an earlier render-orbit result, never over other files."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        transforms = out_dir / "transforms.json"
        try:
            ours = json.loads(transforms.read_text()).get("orbitex_pipeline") == NAME
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise InputError(f"{out_dir}: the folder is not empty and holds no earlier render-orbit result; "
                             "choose an empty or new folder")
        for sub in ("position", "normal", "masks"):  # an earlier run's frames (its frame count may differ)
            for old in (out_dir / sub).glob("*.png"):
                old.unlink()


def run(inputs: dict[str, Path], params: Params, out_dir: Path, progress: Progress) -> dict[str, Path]:
    import numpy as np

    from ..assets.images import Mp4Writer, to_uint, write_png
    from ..assets.mesh import normalize
    from ..assets.load import load_mesh
    from ..assets.viewset import write_transforms
    from ..assets.cameras import Camera, orbit
    from ..render.conditioning import encode_normals, encode_positions
    from ..render.contact_sheet import contact_sheet, thumbnail
    from ..render.gbuffer import get_rasterizer, render_gbuffers

    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    progress(0.0, "loading mesh")
    mesh_path = Path(inputs["mesh"])
    mesh, norm = normalize(load_mesh(mesh_path))
    raster = get_rasterizer(params.rasterizer)
    n, size = params.frames, params.size

    horizontal, vertical = orbit("horizontal", n, size), orbit("vertical", n, size)
    cameras = horizontal + vertical[1:]  # frame 0 is the same view in both orbits: render it once
    names = [f"h_{i:04d}" for i in range(n)] + [f"v_{i:04d}" for i in range(1, n)]
    sheet_cols = sorted({int(i) for i in np.linspace(0, n, SHEET_COLUMNS, endpoint=False)})
    thumbs: dict[str, list] = {key: [] for key in ("h_normal", "h_position", "v_normal", "v_position")}

    out_dir.mkdir(parents=True, exist_ok=True)
    videos = {f"{orb}_{kind}": Mp4Writer(out_dir / f"{orb}_{kind}.mp4", size, size, FPS)
              for orb in ("horizontal", "vertical") for kind in ("position", "normal")}
    render_progress = sub_progress(progress, 0.02, 0.92)
    try:
        for start in range(0, len(cameras), CHUNK):
            chunk = cameras[start:start + CHUNK]
            begin, end = start / len(cameras), (start + len(chunk)) / len(cameras)
            gb = render_gbuffers(mesh, chunk, raster, sub_progress(render_progress, begin, (begin + end) / 2))
            mask = gb.mask.cpu().numpy()
            position, normal = to_uint(encode_positions(gb.position, mask)), to_uint(encode_normals(gb.normal, mask))
            del gb
            for j in range(len(chunk)):
                index, name = start + j, names[start + j]
                write_png(out_dir / "position" / f"{name}.png", position[j])
                write_png(out_dir / "normal" / f"{name}.png", normal[j])
                write_png(out_dir / "masks" / f"{name}.png", mask[j])
                orbits = ["horizontal"] if index < n else ["vertical"]
                if index == 0:
                    orbits.append("vertical")
                for orb in orbits:
                    videos[f"{orb}_position"].write(position[j])
                    videos[f"{orb}_normal"].write(normal[j])
                frame = index if index < n else index - n + 1
                if frame in sheet_cols:
                    for orb in orbits:
                        thumbs[f"{orb[0]}_normal"].append(thumbnail(normal[j], 128))
                        thumbs[f"{orb[0]}_position"].append(thumbnail(position[j], 128))
                render_progress((begin + end) / 2 + (end - begin) / 2 * (j + 1) / len(chunk), "writing frames")
    finally:
        for writer in videos.values():
            writer.close()

    progress(0.93, "writing transforms.json")
    # Cameras go back to the file's frame: x_file = x_norm / scale + center (a similarity, so the
    # images are the same and the intrinsics stay).
    file_cameras = []
    for cam in cameras:
        c2w = cam.c2w.copy()
        c2w[:3, 3] = c2w[:3, 3] / norm.scale + norm.center
        file_cameras.append(Camera(c2w, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height))
    frame_paths = {"position_path": [f"position/{m}.png" for m in names],
                   "normal_path": [f"normal/{m}.png" for m in names],
                   "mask_path": [f"masks/{m}.png" for m in names]}
    metadata = {
        "orbitex_pipeline": NAME,
        "orbitex_source": mesh_path.name,
        "orbitex_rasterizer": raster.name,
        "orbitex_normalization": {"center": [float(c) for c in norm.center], "scale": float(norm.scale)},
        "orbitex_orbits": {"horizontal": names[:n], "vertical": names[:1] + names[n:]},
    }
    # No RGB frames exist: file_path names the normal frames ("orbitex_render_only": "normal").
    transforms = write_transforms(out_dir, file_cameras, frame_paths["normal_path"], frame_paths,
                                  metadata, render_only="normal")

    progress(0.95, "contact sheet")
    captions = [f"{round(360 * c / n)} deg" for c in sheet_cols]
    sheet = contact_sheet([thumbs["h_normal"], thumbs["h_position"], thumbs["v_normal"], thumbs["v_position"]],
                          labels=["horizontal\nnormal", "horizontal\nposition", "vertical\nnormal", "vertical\nposition"],
                          captions=captions)
    sheet_path = write_png(out_dir / "contact_sheet.png", sheet)

    zip_path = out_dir / "viewset.zip"
    members = sorted(p for p in out_dir.rglob("*") if p.is_file() and p != zip_path)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as archive:  # PNG and MP4 are compressed already
        for i, member in enumerate(members):
            archive.write(member, member.relative_to(out_dir).as_posix())
            if i % 32 == 0:
                progress(0.96 + 0.04 * i / len(members), "packing viewset.zip")
    progress(1.0, "done")
    return {"contact_sheet": sheet_path, "viewset": zip_path, "transforms": transforms,
            **{key: writer.path for key, writer in videos.items()}}
