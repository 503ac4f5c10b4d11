"""Reconstruct: 3D Gaussians (3DGS PLY) from a textured mesh, from one image (IM-3D), or from a view set.

From a textured mesh (weight-free): render views of the asset with its base-colour texture from
cameras spread over the sphere, initialize flat Gaussians on its surface with the texture's
colours, and fit them (L1 + SSIM + mask, densification).
From an image: a video model makes the orbit video (frame 0 = the image's view), Gaussians are
fitted to it, then `rounds` times: render the fit at the orbit cameras, noise the renders to a
strength and denoise them with the video model (video-to-video), refit. A white mesh given with the
image places the initial Gaussians on its surface.
From a view set (posed images, transforms.json): Gaussians fitted to them (reconstruct_views.py);
a mesh given with it places the initial Gaussians and checks the cameras' frame (`views_frame`).
The PLY is in the input's frame: the mesh file's coordinates, or for an image alone the unit box
around the origin with +Y up (glTF convention), the image's view looking down -Z.
Module-level imports stay torch-free (the service's HTTP process imports this for INPUTS/Params).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import InputError
from ..progress import Progress, sub_progress
from . import add_views_frame_argument, output_paths
from .reconstruct_fit import (BACKGROUND, Params, fit_config, initial_gaussians, load_mesh_and_texture,
                              write_preview)

if TYPE_CHECKING:
    import torch

    from ..assets.mesh import Mesh
    from ..assets.cameras import Camera

NAME = "reconstruct"
INPUTS: dict[str, str] = {}
OPTIONAL_INPUTS = {
    "mesh": "a textured mesh (GLB/glTF/OBJ/PLY) to turn into Gaussians, or a white mesh that places the "
            "initial Gaussians when an image is given",
    "image": "an image of the subject (PNG/JPG; alpha or a plain background) to reconstruct with the video model",
    "view_set": "posed images to fit the Gaussians to: a view-set folder with transforms.json, or a .zip of it",
}
SUBJECT_FILL = 0.7  # the subject's larger side, as a fraction of the frame, in the orbit views
HELDOUT_ROTATION_DEG = 180.0 / (1 + 5 ** 0.5)  # held-out lattice turned between the training cameras


class _Renamed(argparse.Action):
    """An option's old name, still accepted for a while, with a warning naming the new one."""

    def __init__(self, *args, new_name: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.new_name = new_name

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        print(f"warning: {option_string} is deprecated; use {self.new_name}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("input (a textured mesh, an image, or an image and a white mesh, "
                                       "or a view set with or without a mesh)")
    source.add_argument("--mesh", help=OPTIONAL_INPUTS["mesh"])
    source.add_argument("--image", help=OPTIONAL_INPUTS["image"])
    source.add_argument("--view-set", dest="view_set", help=OPTIONAL_INPUTS["view_set"])
    add_views_frame_argument(parser)
    parser.add_argument("--out", required=True, help="OUT.ply (side results in OUT_files/) or a folder")
    defaults = Params()
    for name, kind, text in (
        ("view-count", int, "cameras to fit to"), ("size", int, "view size in pixels"),
        ("rounds", int, "IM-3D refinement rounds (image input)"), ("iterations", int, "iterations of the first fit"),
        ("gaussians", int, "initial Gaussians"), ("max-gaussians", int, "most Gaussians densification may reach"),
        ("sh-degree", int, "spherical-harmonic degree 0-3"),
        ("strength", float, "noise strength of the first refinement round"), ("model", str, "orbit video model"),
        ("steps", int, "video model denoising steps"), ("video-size", int, "video model frame size"),
        ("prompt", str, "video model prompt"), ("seed", int, "random seed"), ("device", str, "auto, cpu or cuda"),
    ):
        attr = name.replace("-", "_")
        parser.add_argument(f"--{name}", dest=attr, type=kind, default=None,
                            help=f"{text} (default {getattr(defaults, attr)!r})")
    # `views` is a view set elsewhere in the house; the count was --views until 2026-12
    parser.add_argument("--views", dest="view_count", type=int, default=None, action=_Renamed,
                        new_name="--view-count", help=argparse.SUPPRESS)
    parser.add_argument("--force-cpu", dest="force_cpu", action="store_true", default=None,
                        help="run a large video model on the CPU anyway")


# ----------------------------------------------------------------------------- cameras and views

def sphere_cameras(count: int, size: int, rotation_deg: float = 0.0) -> list["Camera"]:
    """`count` cameras on the orbit rig's sphere (radius 1.5, Ink3D's field of view) at the points
    of a Fibonacci lattice, looking at the origin with +Y up; `rotation_deg` turns the lattice about
    +Y (a second, interleaved set for held-out views)."""
    from ..assets.cameras import ORBIT_RADIUS, ORBIT_VFOV_DEG, Camera, look_at

    golden = math.pi * (3.0 - math.sqrt(5.0))
    cams = []
    for i in range(count):
        y = 1.0 - 2.0 * (i + 0.5) / count
        r = math.sqrt(max(0.0, 1.0 - y * y))
        phi = golden * i + math.radians(rotation_deg)
        eye = ORBIT_RADIUS * np.array([r * math.sin(phi), y, r * math.cos(phi)])
        cams.append(Camera.from_fov(look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0])), ORBIT_VFOV_DEG, size, size))
    return cams


def render_mesh_views(mesh: "Mesh", texture: np.ndarray | None, cameras: Sequence["Camera"],
                      background: tuple[float, float, float] = BACKGROUND, supersample: int = 2,
                      rasterizer: str = "auto") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Images (N, H, W, 3) of the mesh with its base-colour texture (grey without), unlit, over
    `background`, and coverage masks (N, H, W); rendered `supersample` x larger and box-filtered."""
    import torch

    from ..assets.material import downsample_texture, sample_texture
    from ..render.gbuffer import render_gbuffers

    s = max(1, int(supersample))
    big = [c.resized(c.width * s, c.height * s) for c in cameras]
    tex = None if texture is None else downsample_texture(texture, 4 * max(big[0].width, big[0].height))
    images, masks = [], []
    for cam in big:  # one view at a time keeps memory flat
        gb = render_gbuffers(mesh, [cam], rasterizer=rasterizer)
        mask = gb.mask[0].numpy()
        rgb = np.empty(mask.shape + (3,), np.float32)
        rgb[:] = background
        if mask.any():
            if tex is None or mesh.uvs is None:
                rgb[mask] = 0.8
            else:
                tri = gb.tri_id[0].numpy()[mask]
                bary = gb.bary[0].numpy()[mask]
                uv = (mesh.uvs[mesh.faces[tri]] * bary[:, :, None]).sum(1)
                rgb[mask] = sample_texture(tex, uv)
        images.append(torch.from_numpy(rgb))
        masks.append(torch.from_numpy(mask.astype(np.float32)))
    img = torch.stack(images).permute(0, 3, 1, 2)
    msk = torch.stack(masks)[:, None]
    if s > 1:
        img = torch.nn.functional.avg_pool2d(img, s)
        msk = torch.nn.functional.avg_pool2d(msk, s)
    return img.permute(0, 2, 3, 1).contiguous(), msk[:, 0].contiguous()


# ----------------------------------------------------------------------------- inputs

def load_subject_image(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The subject of `path` centred on a white square of `size` px, its larger side SUBJECT_FILL
    of the frame: (size, size, 3) float32 and its mask (size, size) float32."""
    import cv2
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
            has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"{path.name}: cannot read the image ({exc})") from None
    rgb = rgba[..., :3]
    if has_alpha and rgba[..., 3].min() < 0.99:
        alpha = rgba[..., 3]
    else:
        from ..models.foreground import cut_foreground

        alpha = cut_foreground(rgb, name=path.name).astype(np.float32)
    ys, xs = np.nonzero(alpha > 0.5)
    if len(ys) == 0:
        raise InputError(f"{path.name}: the image has no visible subject (its alpha is empty)")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0) / SUBJECT_FILL
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    # affine map from the crop square around the subject to the output square
    scale = size / side
    m = np.array([[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]], dtype=np.float64)
    premult = np.concatenate([rgb * alpha[..., None], alpha[..., None]], -1)
    warped = cv2.warpAffine(premult, m, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    a = np.clip(warped[..., 3], 0, 1)
    out = warped[..., :3] + (1 - a[..., None]) * np.array(BACKGROUND, np.float32)
    return np.clip(out, 0, 1).astype(np.float32), a.astype(np.float32)


def frame_masks(frames: np.ndarray, threshold: float = 0.06) -> np.ndarray:
    """Soft subject masks of frames on the white background (distance from white, ramped)."""
    distance = (np.asarray(BACKGROUND, np.float32) - frames).max(-1).clip(0, 1)
    return np.clip(distance / threshold, 0, 1).astype(np.float32)


def _outputs(out: Path, inputs: dict[str, Path]) -> tuple[Path, Path]:
    """(PLY path, folder for side results) following the CLI convention."""
    ply, side = output_paths(out, ".ply", "gaussians.ply")
    for role, path in inputs.items():
        if path.resolve() == ply.resolve():
            raise InputError(f"--out {ply} would overwrite the {role} input")
    side.mkdir(parents=True, exist_ok=True)
    ply.parent.mkdir(parents=True, exist_ok=True)
    return ply, side


# ----------------------------------------------------------------------------- run

def run(inputs: dict[str, Path], params: Params, out_dir: Path, progress: Progress) -> dict[str, Path]:
    inputs = {k: Path(v) for k, v in inputs.items() if v is not None}
    unknown = set(inputs) - set(OPTIONAL_INPUTS)
    if unknown:
        raise InputError(f"reconstruct takes a mesh, an image and/or a view set, not {', '.join(sorted(unknown))}")
    if not inputs:
        raise InputError("reconstruct needs a textured mesh (--mesh), an image (--image), or an image and a white mesh")
    if "image" in inputs and "view_set" in inputs:
        raise InputError("reconstruct takes an image or a view set, not both")
    for role, path in inputs.items():
        if not path.is_file() and not (role == "view_set" and path.is_dir()):
            raise InputError(f"{path}: no such {role} file")
    ply, side = _outputs(Path(out_dir), inputs)
    if "view_set" in inputs:
        from .reconstruct_views import from_views

        report = from_views(inputs["view_set"], inputs.get("mesh"), params, ply, side, progress)
    elif "image" in inputs:
        report = _from_image(inputs["image"], inputs.get("mesh"), params, ply, side, progress)
    else:
        report = _from_mesh(inputs["mesh"], params, ply, side, progress)
    report_path = side / "report.json"
    report_path.write_text(json.dumps({"params": asdict(params), **report}, indent=2) + "\n")
    return {"gaussians": ply, "report": report_path, "preview": side / "preview.png"}



def _from_mesh(path: Path, params: Params, ply: Path, side: Path, progress: Progress) -> dict:
    from ..render.gbuffer import rasterizer_report
    from ..splats.fit import FitViews, fit, psnr, render_views
    from ..splats.ply import write_ply

    mesh, norm, texture = load_mesh_and_texture(path)
    if texture is None:
        raise InputError(f"{path.name}: the mesh has no base-colour texture on a UV map, so there is nothing to "
                         "fit; give an image of the subject too (--image) to reconstruct a white mesh")
    cameras = sphere_cameras(params.view_count, params.size)
    held_cameras = sphere_cameras(heldout_count(params.view_count), params.size, rotation_deg=HELDOUT_ROTATION_DEG)
    progress(0.0, "rendering the textured mesh")
    images, masks = render_mesh_views(mesh, texture, cameras)
    held_images, held_masks = render_mesh_views(mesh, texture, held_cameras)
    init = initial_gaussians(mesh, texture, params)
    result = fit(init, FitViews(cameras, images, masks, BACKGROUND), fit_config(params, params.iterations),
                 sub_progress(progress, 0.1, 0.97),
                 heldout=FitViews(held_cameras, held_images, held_masks, BACKGROUND))
    rendered, _ = render_views(result.gaussians, cameras, BACKGROUND, device=params.device)
    held_rendered, _ = render_views(result.gaussians, held_cameras, BACKGROUND, device=params.device)
    write_ply(result.gaussians.transformed(1.0 / norm.scale, norm.center), ply)
    write_preview(rendered, side / "preview.png")
    progress(1.0, "done")
    return {"source": "mesh", "gaussians": len(result.gaussians), "iterations": result.iterations,
            "stopped_early": result.stopped_early, "fit_seconds": round(result.seconds, 2),
            "training_psnr_db": round(psnr(rendered, images), 2),
            "heldout_psnr_db": round(psnr(held_rendered, held_images), 2), "heldout_views": len(held_cameras),
            "losses": result.losses, "rasterizer": result.rasterizer, "densification": result.edits,
            "mesh_views": rasterizer_report(), "frame": "the mesh file's coordinates"}


def heldout_count(view_count: int) -> int:
    """Views rendered besides the training ones, to stop the fit when they stop improving."""
    return max(2, view_count // 8)


def _from_image(image_path: Path, mesh_path: Path | None, params: Params, ply: Path, side: Path,
                progress: Progress) -> dict:
    import torch

    from ..models.video import ORBIT_PROMPT, VideoOptions, load_orbit_model
    from ..assets.cameras import orbit
    from ..splats.fit import FitViews, fit, psnr, render_views
    from ..splats.ply import write_ply

    reference, reference_mask = load_subject_image(image_path, params.size)
    mesh, norm, texture = load_mesh_and_texture(mesh_path) if mesh_path is not None else (None, None, None)
    progress(0.0, f"loading {params.model}")
    video_model = load_orbit_model(params.model, params.device, params.force_cpu,  # params.model: its name
                                   frames=params.view_count + 4, size=params.video_size)
    cameras = orbit("horizontal", video_model.frame_count(params.view_count), params.size)
    options = VideoOptions(prompt=params.prompt or ORBIT_PROMPT, steps=params.steps, seed=params.seed,
                           size=params.video_size)
    share = 1.0 / (2 + 2 * params.rounds)  # generate, fit, then (refine, refit) per round

    frames = video_model.generate(reference, cameras, options, sub_progress(progress, 0.0, share))
    gaussians, history = initial_gaussians(mesh, texture, params), []
    for round_ in range(params.rounds + 1):
        frames[0] = reference  # frame 0 is the input image's own view
        masks = frame_masks(frames)
        masks[0] = reference_mask
        views = FitViews(cameras, torch.from_numpy(frames.copy()), torch.from_numpy(masks), BACKGROUND)
        iterations = params.iterations if round_ == 0 else max(params.iterations // 2, 1)
        start = share * (1 + 2 * round_)
        result = fit(gaussians, views, fit_config(params, iterations, densify=True),
                     sub_progress(progress, start, start + share), stage=f"fitting Gaussians (round {round_})")
        gaussians = result.gaussians
        rendered, _ = render_views(gaussians, cameras, BACKGROUND, device=params.device)
        history.append({"round": round_, "gaussians": len(gaussians), "iterations": iterations,
                        "psnr_to_video_db": round(psnr(rendered, views.images), 2),
                        "fit_seconds": round(result.seconds, 2)})
        if round_ == params.rounds:
            break
        strength = params.strength * (0.7 ** round_)
        frames = video_model.refine(rendered.numpy(), reference, cameras, strength, options,
                              sub_progress(progress, start + share, start + 2 * share))
        history[-1]["next_strength"] = round(strength, 3)
    out = gaussians if norm is None else gaussians.transformed(1.0 / norm.scale, norm.center)
    write_ply(out, ply)
    write_preview(rendered, side / "preview.png")
    progress(1.0, "done")
    return {"source": "image", "model": params.model, "frames": len(cameras), "gaussians": len(gaussians),
            "rounds": history, "losses": result.losses, "rasterizer": result.rasterizer,
            "frame": "the mesh file's coordinates" if norm is not None else "unit box at the origin, +Y up, image view along -Z"}
