"""texture: a white mesh + one reference image -> the mesh textured on its own UVs (Ink3D).

Stages: check the generator's model (before any work) -> load mesh and reference (subject cut
out, on black) -> horizontal and vertical orbit G-buffers around the reference view -> generator
(projection | wan-vace | orbitpainter) -> view set -> bake onto the mesh's UVs -> GLB, texture
PNG, turntable (PNG strip and MP4; `turntable=False` skips it), report. The mesh is loaded and the
GLB written the way the bake pipeline does (backend/pipelines/baked_glb.py): the texture lands on
the requested UV map (`bake.uv_map`) of the input's own glTF.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from ..bake.params import METHODS, BakeParams
from ..errors import InputError
from ..progress import Progress
from ..render.views_frame import VIEWS_FRAMES, ViewsFrame
from . import add_views_frame_argument, output_paths
from .baked_glb import load_bake_target, uv_map_name, write_baked_glb

NAME = "texture"
INPUTS = {"mesh": "the white mesh (GLB, glTF, OBJ or PLY)",
          "image": "the reference image of the textured object (PNG/JPEG; alpha used when present)"}
OPTIONAL_INPUTS = {"camera": "transforms.json whose first frame is the camera the reference image was "
                             "taken from, in the mesh's own frame or Blender's (see --views-frame; default: "
                             "frame 0 of the orbit, on +Z)"}
GENERATOR_NAMES = ("projection", "wan-vace", "orbitpainter")
TURNTABLE_FRAMES = 48
TURNTABLE_STRIP = 8
TURNTABLE_SIZE = 256


@dataclass
class Params:
    generator: Literal["projection", "wan-vace", "orbitpainter"] = "projection"
    frames: int = 61  # frames per orbit (horizontal and vertical)
    size: int = 512  # orbit frame side in pixels
    seed: int = 0
    prompt: str = "This is a 3D model"
    model: str | None = None  # registry name of the generator's model (default: the generator's own)
    steps: int | None = None  # denoising steps (video generators; default: theirs)
    guidance: float | None = None  # classifier-free guidance scale (video generators)
    device: str = "auto"
    force_cpu: bool = False  # run a large video model on the CPU anyway
    # the bake's options (uv_map, rasterizer: the whole job's); bake.fit_steps None = no texture fit
    # here: generated frames are one model's consistent renders, not photos to deblur and register,
    # and a fit of 2048² over 61 frames at 512² takes minutes (the demo's budget is 90 s)
    bake: BakeParams = field(default_factory=BakeParams)
    turntable: bool = True  # render the turntable preview (PNG strip + MP4; about half a small job's time)
    views_frame: ViewsFrame = "auto"  # frame of the reference camera (`camera` input): gltf | blender | auto

    def __post_init__(self) -> None:
        if self.views_frame not in VIEWS_FRAMES:
            raise InputError(f"unknown views_frame {self.views_frame!r}; use one of {', '.join(VIEWS_FRAMES)}")
        if self.generator not in GENERATOR_NAMES:
            raise InputError(f"unknown generator {self.generator!r}; use one of {', '.join(GENERATOR_NAMES)}")
        if not 1 <= self.frames <= 241:
            raise InputError(f"frames must be between 1 and 241, not {self.frames}")
        if not 16 <= self.size <= 2048:
            raise InputError(f"size must be between 16 and 2048, not {self.size}")
        if self.bake.views_frame != "auto":  # read by the bake pipeline only, not by bake() itself
            raise InputError("bake.views_frame does not apply to a texture job: its generated views are in the mesh's "
                             "own frame; the reference camera's frame is views_frame")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", help=INPUTS["mesh"])
    parser.add_argument("image", help=INPUTS["image"])
    parser.add_argument("--out", required=True, help="OUT.glb (side results in OUT_files/) or a folder")
    parser.add_argument("--camera", help=OPTIONAL_INPUTS["camera"])
    parser.add_argument("--generator", choices=GENERATOR_NAMES, help="orbit frame generator (default projection)")
    parser.add_argument("--frames", type=int, help="frames per orbit (default 61)")
    parser.add_argument("--size", type=int, help="orbit frame size in pixels (default 512)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--prompt", help='text prompt of the video generators (default "This is a 3D model")')
    parser.add_argument("--model", help="weights registry name of the generator's model (see: models list)")
    parser.add_argument("--steps", type=int, help="denoising steps of the video generators")
    parser.add_argument("--guidance", type=float, help="guidance scale of the video generators")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--force-cpu", dest="force_cpu", action="store_true", default=None,
                        help="run a large video model on the CPU anyway (hours)")
    # flags of the nested bake options: dest "bake.NAME" fills params.bake (backend/cli.py)
    parser.add_argument("--method", dest="bake.method", choices=METHODS, help="bake view selection (default mrf)")
    parser.add_argument("--fit-steps", dest="bake.fit_steps", type=int,
                        help="steps of the bake's texture fit to the frames (default: 0 = off; 300 with --method optimize)")
    parser.add_argument("--texture-size", dest="bake.texture_size", type=int, help="texture side (default 2048)")
    parser.add_argument("--voxel-res", dest="bake.voxel_res", type=int, help="bake surface voxels (default 256)")
    parser.add_argument("--uv-map", dest="bake.uv_map", help="UV map to bake onto (default: the first)")
    parser.add_argument("--rasterizer", dest="bake.rasterizer", help="auto | moderngl | torch | nvdiffrast")
    parser.add_argument("--no-turntable", dest="turntable", action="store_false", default=None,
                        help="skip the turntable preview (PNG strip and MP4)")
    add_views_frame_argument(parser)


def run(inputs: dict[str, Path], params: Params, out_dir: Path, progress: Progress) -> dict[str, Path]:
    from ..models import generators
    from ..models.types import GenerateOptions, Reference

    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        timings[stage] = round(now - clock[0], 3)
        clock[0] = now

    for role in INPUTS:
        if role not in inputs:
            raise InputError(f"texture needs a {role}: {INPUTS[role]}")
    options = GenerateOptions(prompt=params.prompt, seed=params.seed, steps=params.steps, guidance=params.guidance,
                              model=params.model, device=params.device, force_cpu=params.force_cpu)
    # everything that can fail without doing work fails here: weights, memory, frame count
    progress(0.0, "checking the generator's model")
    generator = generators.prepare(params.generator, options, params.frames, params.size)
    lap("check_model")

    from ..assets.mesh import normalize
    from ..models.reference import load_reference

    glb_path, side = output_paths(out_dir, ".glb", "textured.glb")
    if any(Path(glb_path).resolve() == Path(f).resolve() for f in inputs.values()):
        raise InputError(f"{glb_path.name}: the output would overwrite an input file; choose another --out")
    target = load_bake_target(inputs["mesh"], params.bake.uv_map)
    mesh = target.mesh
    reference = load_reference(inputs["image"])
    height, width = reference.mask.shape
    user_camera, frame = None, None
    if inputs.get("camera"):
        from ..render.views_frame import resolve_views_frame

        camera = read_reference_camera(inputs["camera"], width, height)
        cameras, frame = resolve_views_frame(mesh, [camera], reference.rgb[None], reference.mask[None],
                                             params.views_frame, params.bake.rasterizer, what="the reference camera")
        user_camera = cameras[0]
    norm_mesh, norm = normalize(mesh)
    lap("load")

    from ..progress import sub_progress
    from ..render.gbuffer import rasterizer_report, render_gbuffers

    progress(0.02, "orbit G-buffers")
    ref_camera, frame0 = reference_camera(width, height, norm, user_camera)
    orbits = orbit_gbuffers(norm_mesh, params.frames, params.size, frame0, params.bake.rasterizer,
                            sub_progress(progress, 0.02, 0.2))
    ref_gbuffer = render_gbuffers(norm_mesh, [ref_camera], params.bake.rasterizer)
    if not bool(ref_gbuffer.mask.any()):
        raise InputError("the reference camera sees none of the mesh: check --camera (it must be in the mesh's "
                         "own frame, looking at the mesh)")
    lap("orbit_gbuffers")

    ref = Reference(reference.rgb, reference.mask, ref_camera, ref_gbuffer)
    frames = generator.generate(norm_mesh, orbits, ref, options, sub_progress(progress, 0.2, 0.6))
    for orbit in orbits:
        if frames[orbit.name].shape != (len(orbit), params.size, params.size, 3):
            raise RuntimeError(f"generator {params.generator} returned {frames[orbit.name].shape} frames for the "
                               f"{orbit.name} orbit")
    lap("generate")

    views = make_viewset(orbits, frames, norm)
    views_json = write_views(views, side / "views")
    lap("write_views")

    from ..bake.baker import bake

    bake_params = params.bake
    if bake_params.fit_steps is None and bake_params.method != "optimize":  # no fit of generated frames unless asked
        bake_params = replace(bake_params, fit_steps=0)  # (optimize is the fit: its default stands)
    result = bake(mesh, views, bake_params, sub_progress(progress, 0.6, 0.92))
    lap("bake")

    progress(0.93, "writing GLB" + (" and turntable" if params.turntable else ""))
    from ..assets.images import write_mp4, write_png

    side.mkdir(parents=True, exist_ok=True)
    files = {"glb": write_baked_glb(target, result, glb_path),
             "texture": write_png(side / "texture.png", result.texture), "views": views_json}
    lap("write")
    if params.turntable:
        turntable = render_turntable(result.mesh, result.texture, norm, frame0, params.bake.rasterizer)
        strip = turntable[:: len(turntable) // TURNTABLE_STRIP][:TURNTABLE_STRIP]
        files["turntable"] = write_png(side / "turntable.png",
                                       strip.transpose(1, 0, 2, 3).reshape(strip.shape[1], -1, 3))
        files["turntable_video"] = write_mp4((turntable * 255 + 0.5).astype("uint8"), side / "turntable.mp4", fps=24)
        lap("turntable")

    report = {"generator": params.generator, "params": asdict(params), "seconds": timings,
              "seconds_total": round(sum(timings.values()), 3), "bake": result.report,
              "uv_map": uv_map_name(target, result), "reference_alpha": reference.had_alpha,
              "views_frame": None if frame is None else frame.report(),
              "generator_calls": _calls(generator), **rasterizer_report(params.bake.rasterizer)}
    report_path = side / "report.json"
    report_path.write_text(json.dumps(report, indent=2, default=str))
    progress(1.0, "done")
    return {**files, "report": report_path}


def _calls(generator: object) -> list[dict]:
    calls = getattr(generator, "calls", [])
    return [{k: v for k, v in c.items() if not hasattr(v, "shape")} for c in calls]


# ----------------------------------------------------------------------------- stages

def read_reference_camera(path: Path, width: int, height: int):  # type: ignore[no-untyped-def]
    """The first frame's camera of a transforms.json (no images needed), at the reference image's
    size: its intrinsics are scaled when it names another size of the same aspect ratio; without
    any focal length it gets the orbit's field of view."""
    from ..assets.viewset import _camera, _load_transforms  # the view set's own parsing
    from ..assets.cameras import ORBIT_VFOV_DEG

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such camera file")
    meta = _load_transforms(path)
    frames = meta.get("frames") or []
    if not frames or not isinstance(frames[0], dict):
        raise InputError(f"{path.name}: no frames: the first frame must be the reference image's camera")
    frame = dict(frames[0])
    for key, value in (("w", width), ("h", height)):
        if key not in frame and key not in meta:
            frame[key] = value
    has_focal = any(k in frame or k in meta for k in ("fl_x", "fl_y", "camera_angle_x", "camera_angle_y"))
    if not has_focal:
        frame["camera_angle_y"] = math.radians(ORBIT_VFOV_DEG)
    camera = _camera(meta, frame, "frame 0", None)
    if abs(camera.width / camera.height - width / height) > 0.02:
        raise InputError(f"{path.name}: the camera's image is {camera.width}x{camera.height} but the reference "
                         f"image is {width}x{height}: their aspect ratios differ")
    return camera.resized(width, height)


def reference_camera(width: int, height: int, norm, user_camera=None):  # type: ignore[no-untyped-def]
    """The reference camera in the normalized frame at the image's size, and the orbit's frame-0
    pose (None = the default, on +Z)."""
    import numpy as np

    from ..assets.cameras import ORBIT_VFOV_DEG, Camera, reference_c2w

    if user_camera is None:
        return Camera.from_fov(reference_c2w(), ORBIT_VFOV_DEG, width, height), None
    c2w = np.array(user_camera.c2w, dtype=np.float64)
    c2w[:3, :3] /= np.linalg.norm(c2w[:3, :3], axis=0, keepdims=True)  # drop any scale in the matrix
    c2w[:3, 3] = (c2w[:3, 3] - norm.center) * norm.scale
    cam = user_camera
    return Camera(c2w, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height), c2w


def orbit_gbuffers(mesh, frames: int, size: int, frame0, rasterizer: str, progress: Progress):  # type: ignore[no-untyped-def]
    """Horizontal then vertical orbit with their G-buffers; both share frame 0."""
    from ..models.types import Orbit
    from ..progress import sub_progress
    from ..assets.cameras import orbit
    from ..render.gbuffer import render_gbuffers

    result = []
    for k, kind in enumerate(("horizontal", "vertical")):
        cams = orbit(kind, frames, size, frame0_c2w=frame0)
        result.append(Orbit(kind, cams, render_gbuffers(mesh, cams, rasterizer,
                                                        sub_progress(progress, k / 2, (k + 1) / 2))))
    return result


def make_viewset(orbits, frames: dict, norm):  # type: ignore[no-untyped-def]
    """The generated frames as a view set in the mesh file's frame. The vertical orbit's frame 0
    repeats the horizontal one's (the shared reference view) and is left out."""
    import numpy as np

    from ..assets.viewset import ViewSet
    from ..assets.cameras import Camera

    cameras, images, masks, names = [], [], [], []
    for orbit in orbits:
        for i, cam in enumerate(orbit.cameras):
            if orbit.name == "vertical" and i == 0:
                continue
            c2w = cam.c2w.copy()
            c2w[:3, 3] = norm.invert(c2w[None, :3, 3])[0]  # scaling the scene and the camera together
            cameras.append(Camera(c2w, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height))
            images.append(frames[orbit.name][i])
            masks.append(orbit.gbuffers.mask[i].numpy())
            names.append(f"{orbit.name[0]}_{i:03d}")
    return ViewSet(cameras=cameras, images=np.stack(images), masks=np.stack(masks), names=names)


def write_views(views, folder: Path) -> Path:  # type: ignore[no-untyped-def]
    """The generated orbit as a view set folder (the `bake` pipeline takes it as is)."""
    from ..assets.viewset import write_viewset

    return write_viewset(folder, views.cameras, views.images, views.masks, names=views.names)


def render_turntable(mesh, texture, norm, frame0, rasterizer: str):  # type: ignore[no-untyped-def]
    """Base-colour renders of the textured mesh on a horizontal orbit: (N, S, S, 3) float32."""
    from ..assets.mesh import normalize
    from ..assets.cameras import orbit
    from ..render.gbuffer import render_gbuffers

    norm_mesh, _ = normalize(mesh)
    cams = orbit("horizontal", TURNTABLE_FRAMES, TURNTABLE_SIZE, frame0_c2w=frame0)
    g = render_gbuffers(norm_mesh, cams, rasterizer)
    return sample_texture(mesh, texture, g.tri_id, g.bary, g.mask)


def sample_texture(mesh, texture, tri_id, bary, mask):  # type: ignore[no-untyped-def]
    """Colour per pixel from the mesh's UVs (OpenGL origin) and its texture (row 0 = top)."""
    import numpy as np
    import torch

    uv = torch.as_tensor(mesh.uvs, dtype=torch.float32)
    faces = torch.as_tensor(mesh.faces, dtype=torch.long)
    corners = faces[tri_id.clamp(min=0).long()]  # (N, H, W, 3)
    pix_uv = (uv[corners] * bary[..., None]).sum(-2)  # (N, H, W, 2)
    grid = torch.stack([pix_uv[..., 0] * 2 - 1, (1 - pix_uv[..., 1]) * 2 - 1], dim=-1)
    tex = torch.as_tensor(np.ascontiguousarray(texture), dtype=torch.float32).permute(2, 0, 1)[None]
    out = torch.nn.functional.grid_sample(tex.expand(len(grid), -1, -1, -1), grid, mode="bilinear",
                                          padding_mode="border", align_corners=False)
    return (out.permute(0, 2, 3, 1) * mask[..., None]).numpy().astype(np.float32)
