"""Refine (TIRE): keep what the source view shows of an asset, repaint what it never saw, from photos of the subject.

Track -> inpaint -> resplat/rebake. The asset is normalized (box centred, largest side 1) and
rendered from an orbit around the source view (a horizontal and a vertical orbit of `frames` views
each, sharing frame 0 = the source); each frame's pixels are tracked back to the source and to
the frames finished before it (`tracker`: exact depth-tested reprojection through the rendered
geometry, or DIS optical flow chained along the orbit, or CoTracker3 when its weights are
installed); the frames are painted outward in stages (anchors 20, 90, 180 degrees), and the
refined frames become the asset again:
  textured mesh (GLB/glTF/OBJ)  rebaked onto its own UV map (the bake's MRF view selection, the source
                                view locked where it sees the surface); texels the source view sees keep
                                the input texture exactly. Result: OUT.glb, the input glTF as it was
                                (nodes, skins, animations untouched) with the new base-colour texture.
  3DGS PLY                      refit from the refined frames starting from the input Gaussians (no
                                densification); Gaussians the source view sees keep their input
                                parameters. Result: OUT.ply.
  animated asset                a skinned / morph-target glTF, or a folder (or .zip) of per-frame meshes
                                of one topology: see refine_animated.py (texture refined once from every
                                animation frame; OUT.glb, or OUT.ply + a per-frame PLY sequence).

Subject images (1-8 photos of the subject): the weight-free path uses the first to find the source
view (`source_view` "auto": the orbit view whose render looks most like it); sd-inpaint trains a
subject LoRA on all of them (`train_lora`) and paints with it.

Inputs (service roles; upload each file under its role's form field):
  asset        the asset: .glb/.gltf/.obj textured mesh, 3DGS .ply, animated .glb, or a .zip of per-frame meshes
  subject      the first subject photo (PNG/JPG)
  subject_1 .. subject_7   more subject photos (optional)
  cameras      optional transforms.json: its first frame's camera_matrix is the source view (the asset
               file's frame), overriding `source_view`
The CLI: python -m backend refine ASSET --subject IMG [IMG ...] --out OUT(.glb|.ply)
    [--source-view auto|N|transforms.json] [--inpainter opencv|sd-inpaint] [--anchors 20,90,180]
    [--strength 0.3] [--frames 61] [--size 512] [--train-lora/--no-train-lora] [--tracker geometry|flow|cotracker]
Side results in OUT_files/ (or the --out folder): report.json, frames.png (input renders, unseen
masks and refined frames of a few views), texture.png (meshes), frames/NNN.ply + frames.json (4D Gaussians).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from ..errors import InputError
from ..progress import Progress, sub_progress
from . import output_paths

if TYPE_CHECKING:
    import numpy as np

    from ..assets.cameras import Camera
    from ..track.geometry import ViewGeometry
    from .refine_progressive import Correspond

NAME = "refine"
MAX_SUBJECTS = 8
SUBJECT_ROLES = ["subject"] + [f"subject_{i}" for i in range(1, MAX_SUBJECTS)]
INPUTS = {"asset": "the asset: textured GLB/glTF/OBJ, 3DGS PLY, animated glTF, or a .zip of per-frame meshes",
          "subject": "a photo of the subject (PNG/JPG)"}
OPTIONAL_INPUTS = {**{role: "another photo of the subject" for role in SUBJECT_ROLES[1:]},
                   "cameras": "transforms.json whose first frame is the source view (in the asset file's frame)"}
BACKGROUND = (1.0, 1.0, 1.0)
MIN_SUBJECT_SIDE = 8
AUTO_CANDIDATES = 12  # azimuths tried by source_view "auto"


@dataclass
class Params:
    source_view: str = "auto"  # "auto" or N: frame N of a horizontal orbit of `frames` views from the front (+Z)
    inpainter: Literal["opencv", "sd-inpaint"] = "opencv"
    opencv_method: Literal["telea", "shiftmap"] = "telea"  # opencv inpainter: diffusion, or patches copied in
    anchors: list[float] = field(default_factory=lambda: [20.0, 90.0, 180.0])  # stage limits, degrees from the source
    strength: float = 0.3  # sd-inpaint denoising strength
    frames: int = 61  # views per orbit (horizontal and vertical, sharing the source view)
    size: int = 512  # frame size in pixels
    train_lora: bool = True  # sd-inpaint: train (or reuse the cached) subject LoRA
    lora_steps: int = 500
    model: str = "sd-inpaint"  # sd-inpaint model (registry name)
    prompt: str = ""
    tracker: Literal["geometry", "flow", "cotracker"] = "geometry"
    dilate: int = 2  # unseen masks grow by this many pixels
    texture_size: int | None = None  # meshes: the rebaked texture's side (default: the input texture's)
    voxel_res: int = 128  # meshes: the bake's surface voxels across the asset
    iterations: int = 600  # Gaussians: refit iterations
    time_frames: int = 8  # animated assets: animation frames sampled
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.source_view != "auto" and not str(self.source_view).isdigit():
            raise InputError(f"source_view must be 'auto' or a frame index, not {self.source_view!r} "
                             "(give a transforms.json as the `cameras` input for a posed source view)")
        anchors = [float(a) for a in self.anchors]
        if not anchors or any(b <= a for a, b in zip(anchors, anchors[1:])) or anchors[0] <= 0 or anchors[-1] != 180:
            raise InputError(f"anchors must increase from above 0 to 180 degrees (e.g. 20,90,180), not {self.anchors}")
        self.anchors = anchors
        if not 0.0 < self.strength <= 1.0:
            raise InputError("strength must be in (0, 1]")
        if not 4 <= self.frames <= 720:
            raise InputError(f"frames must be between 4 and 720 per orbit (got {self.frames})")
        if not 32 <= self.size <= 2048:
            raise InputError(f"size must be between 32 and 2048 pixels (got {self.size})")
        if self.source_view != "auto" and int(self.source_view) >= self.frames:
            raise InputError(f"source_view {self.source_view} is not a frame of a {self.frames}-frame orbit")
        if not 0 <= self.dilate <= 32 or self.lora_steps < 1 or self.iterations < 1:
            raise InputError("dilate must be 0-32 pixels, lora_steps and iterations positive")
        if self.texture_size is not None and not 16 <= self.texture_size <= 8192:
            raise InputError("texture_size must be between 16 and 8192")
        if not 2 <= self.time_frames <= 240:
            raise InputError("time_frames must be between 2 and 240")


class _Subjects(argparse.Action):
    """--subject IMG [IMG ...] -> the roles subject, subject_1, ..."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        if len(values) > MAX_SUBJECTS:
            parser.error(f"at most {MAX_SUBJECTS} subject images")
        for role, value in zip(SUBJECT_ROLES, values):
            setattr(namespace, role, value)


class _SourceView(argparse.Action):
    """--source-view auto|N|transforms.json: a .json file is the `cameras` input."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        setattr(namespace, "cameras" if str(values).lower().endswith(".json") else "source_view", values)


def _anchor_list(text: str) -> list[float]:
    try:
        return [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"anchors are comma-separated degrees (20,90,180), not {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("asset", help=INPUTS["asset"])
    parser.add_argument("--subject", nargs="+", action=_Subjects, required=True, metavar="IMG",
                        help=f"1-{MAX_SUBJECTS} photos of the subject")
    parser.add_argument("--out", required=True, help="OUT.glb / OUT.ply (side results in OUT_files/) or a folder")
    parser.add_argument("--source-view", action=_SourceView, metavar="auto|N|transforms.json",
                        help="the view the asset is right from (default auto: the view most like the first photo)")
    parser.add_argument("--inpainter", choices=["opencv", "sd-inpaint"], help="default opencv (weight-free)")
    parser.add_argument("--opencv-method", dest="opencv_method", choices=["telea", "shiftmap"],
                        help="opencv inpainter: telea (diffusion from the border, default) or shiftmap (patches copied in)")
    parser.add_argument("--anchors", type=_anchor_list, help="stage limits in degrees (default 20,90,180)")
    parser.add_argument("--tracker", choices=["geometry", "flow", "cotracker"], help="default geometry")
    parser.add_argument("--train-lora", dest="train_lora", action=argparse.BooleanOptionalAction, default=None,
                        help="sd-inpaint: train the subject LoRA (cached per subject; default on)")
    defaults = Params()
    for name, kind, text in (("strength", float, "sd-inpaint denoising strength"), ("frames", int, "views per orbit"),
                             ("size", int, "frame size in pixels"), ("lora-steps", int, "LoRA training steps"),
                             ("model", str, "sd-inpaint model"), ("prompt", str, "inpainting prompt"),
                             ("dilate", int, "unseen-mask dilation in pixels"),
                             ("texture-size", int, "rebaked texture side (default: the input's)"),
                             ("voxel-res", int, "bake surface voxels"), ("iterations", int, "Gaussian refit iterations"),
                             ("time-frames", int, "animation frames sampled (animated assets)"),
                             ("seed", int, "random seed"), ("device", str, "auto, cpu or cuda")):
        attr = name.replace("-", "_")
        parser.add_argument(f"--{name}", dest=attr, type=kind, default=None,
                            help=f"{text} (default {getattr(defaults, attr)!r})")


# ----------------------------------------------------------------------------- inputs

def subject_paths(inputs: dict[str, Path]) -> list[Path]:
    """The subject photos in role order; InputError when there is none or one is unusable."""
    paths = [Path(inputs[role]) for role in SUBJECT_ROLES if inputs.get(role) is not None]
    if not paths:
        raise InputError("refine needs at least one subject image (--subject IMG, service role 'subject')")
    import numpy as np

    from ..assets.images import read_image

    for path in paths:
        if not path.is_file() or path.stat().st_size == 0:
            raise InputError(f"{path.name}: the subject image is empty or missing")
        image = read_image(path)
        if min(image.shape[:2]) < MIN_SUBJECT_SIDE:
            raise InputError(f"{path.name}: the subject image is {image.shape[1]}x{image.shape[0]} pixels; "
                             f"it needs at least {MIN_SUBJECT_SIDE} on each side")
        if image.shape[2] == 4 and float(image[..., 3].max()) <= 0.0:
            raise InputError(f"{path.name}: the subject image is fully transparent")
        if float(np.ptp(image[..., :3].reshape(-1, 3), axis=0).max()) == 0.0:
            raise InputError(f"{path.name}: the subject image is one flat colour; it shows no subject")
    return paths


def asset_kind(path: Path) -> str:
    """"mesh", "gaussians" or "animated" (a folder/.zip of per-frame meshes, or an animated glTF)."""
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".zip":
        return "animated"
    if not path.is_file():
        raise InputError(f"{path}: no such asset file")
    if suffix == ".ply":
        with open(path, "rb") as f:
            header = f.read(4096).split(b"end_header")[0]
        return "gaussians" if b"f_dc_0" in header else "mesh"
    if suffix in (".glb", ".gltf"):
        from .refine_animated import is_animated_gltf

        return "animated" if is_animated_gltf(path) else "mesh"
    if suffix == ".obj":
        return "mesh"
    raise InputError(f"{path.name}: unsupported asset {suffix!r}; give a textured GLB/glTF/OBJ, a 3DGS PLY, "
                     "an animated glTF, or a .zip of per-frame meshes")


def check_models(params: Params) -> None:
    """Fail before any work when the chosen inpainter or tracker cannot run (every missing model named at once)."""
    from ..errors import MissingWeightsError
    from ..models.inpaint import require_inpainter

    checks = [lambda: require_inpainter(params.inpainter, params.model)]
    if params.tracker == "cotracker":
        checks.append(lambda: _cotracker().require_weights())
    problems = []
    for check in checks:
        try:
            check()
        except MissingWeightsError as exc:
            problems.append(str(exc))
    if problems:
        raise MissingWeightsError(" ".join(problems))


def _cotracker():  # type: ignore[no-untyped-def]
    import importlib

    from ..errors import OrbitexError

    try:
        return importlib.import_module("backend.models.cotracker")
    except ModuleNotFoundError as exc:
        if exc.name != "backend.models.cotracker":
            raise OrbitexError(f"the CoTracker3 tracker cannot load: {exc}") from None
        raise OrbitexError("the CoTracker3 tracker is not part of this backend build (backend/models/cotracker.py "
                           "is missing); use --tracker geometry or flow") from None


# ----------------------------------------------------------------------------- cameras and renders

@dataclass
class Rendered:
    """The asset seen from the refine cameras (index 0 = the source view)."""

    cameras: list["Camera"]
    images: "np.ndarray"  # (N, H, W, 3) float32 over the white background
    masks: "np.ndarray"  # (N, H, W) bool
    views: list["ViewGeometry"]
    orbits: list[list[int]]  # frame indices of each orbit (cyclic, both from frame 0)


def refine_cameras(source_c2w: "np.ndarray", frames: int, size: int) -> tuple[list["Camera"], list[list[int]]]:
    """Horizontal and vertical orbits around the source view (frame 0 of both, stored once)."""
    from ..assets.cameras import orbit

    horizontal = orbit("horizontal", frames, size, frame0_c2w=source_c2w)
    vertical = orbit("vertical", frames, size, frame0_c2w=source_c2w)
    cams = horizontal + vertical[1:]
    return cams, [list(range(frames)), [0] + list(range(frames, 2 * frames - 1))]


def render_mesh(mesh, texture: "np.ndarray", cameras: Sequence["Camera"]) -> tuple["np.ndarray", "np.ndarray", list]:  # type: ignore[no-untyped-def]
    """Images (N, H, W, 3) of the textured mesh (nearest-texel-free bilinear lookups, unlit, white
    background), masks and ViewGeometry per camera."""
    import numpy as np

    from ..assets.material import downsample_texture, sample_texture
    from ..render.gbuffer import render_gbuffers
    from ..track.geometry import mesh_view_geometry

    tex = downsample_texture(texture, 4 * max(cameras[0].width, cameras[0].height))
    images, masks, views = [], [], []
    for start in range(0, len(cameras), 8):
        chunk = list(cameras[start:start + 8])
        gb = render_gbuffers(mesh, chunk)
        for v in mesh_view_geometry(gb, chunk):
            rgb = np.empty(v.mask.shape + (3,), np.float32)
            rgb[:] = BACKGROUND
            uv = (mesh.uvs[mesh.faces[v.tri_id[v.mask]]] * v.bary[v.mask][:, :, None]).sum(1)
            rgb[v.mask] = sample_texture(tex, uv)
            images.append(rgb)
            masks.append(v.mask)
            views.append(v)
    return np.stack(images), np.stack(masks), views


def render_gaussians(gaussians, cameras: Sequence["Camera"], device: str) -> tuple["np.ndarray", "np.ndarray", "np.ndarray", list]:  # type: ignore[no-untyped-def]
    """Images, coverage masks (alpha > 0.5), alphas and ViewGeometry (depth / alpha) of Gaussians."""
    import numpy as np
    import torch

    from ..splats.fit import pick_device, pick_rasterizer, render_fn
    from ..track.geometry import depth_view_geometry, estimate_normals

    dev = pick_device(device)
    render = render_fn(pick_rasterizer("auto", dev))
    g = gaussians.to(dev)
    bg = torch.tensor(BACKGROUND, dtype=torch.float32, device=dev)
    images, masks, alphas, views = [], [], [], []
    with torch.no_grad():
        for cam in cameras:
            out = render(g, cam, bg)
            alpha = out.alpha.cpu().numpy()
            mask = alpha > 0.5
            depth = out.depth.cpu().numpy() / np.maximum(alpha, 1e-6)
            view = depth_view_geometry(cam, depth, mask)
            views.append(estimate_normals(view))
            images.append(out.color.cpu().numpy())
            masks.append(mask)
            alphas.append(alpha)
    return np.stack(images).astype(np.float32), np.stack(masks), np.stack(alphas).astype(np.float32), views


def choose_source_view(subject: Path, render_fn_: Any, frames: int) -> tuple["np.ndarray", dict]:
    """The camera-to-world of the horizontal-orbit view (AUTO_CANDIDATES azimuths from the front)
    whose render looks most like the subject photo: both cropped to their subject, 32 px, mean
    colour difference over the union of the two silhouettes."""
    import numpy as np

    from ..assets.cameras import orbit
    from .reconstruct import load_subject_image

    photo, alpha = load_subject_image(subject, 128)
    target = _crop(photo, alpha > 0.5)
    cams = orbit("horizontal", AUTO_CANDIDATES, 96)
    images, masks = render_fn_(cams)
    scores = []
    for img, mask in zip(images, masks):
        if not mask.any():
            scores.append(float("inf"))
            continue
        scores.append(float(np.abs(_crop(img, mask) - target).mean()))
    best = int(np.argmin(scores))
    return cams[best].c2w, {"source_view": "auto", "azimuth_deg": round(360.0 * best / AUTO_CANDIDATES, 2),
                            "scores": [round(s, 4) for s in scores]}


def _crop(image: "np.ndarray", mask: "np.ndarray", side: int = 32) -> "np.ndarray":
    import cv2
    import numpy as np

    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.where(mask[..., None], image, 1.0)[y0:y1, x0:x1].astype(np.float32)
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)


def source_c2w(inputs: dict[str, Path], params: Params, norm, render_fn_: Any,  # type: ignore[no-untyped-def]
               subjects: list[Path]) -> tuple["np.ndarray", dict]:
    """The source camera (normalized frame) from `cameras`, `source_view` N, or "auto"."""
    import numpy as np

    from ..assets.cameras import orbit

    if inputs.get("cameras") is not None:
        path = Path(inputs["cameras"])
        try:
            meta = json.loads(path.read_text())
            c2w = np.asarray(meta["frames"][0]["transform_matrix"], dtype=np.float64)
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            raise InputError(f"{path.name}: not a transforms.json with a frame holding a transform_matrix") from None
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0, 0, 0, 1]])
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
            raise InputError(f"{path.name}: the first frame's transform_matrix is not a finite 4x4 matrix")
        c2w = c2w.copy()
        rot = c2w[:3, :3]
        c2w[:3, :3] = rot / np.cbrt(np.linalg.det(rot))
        c2w[:3, 3] = (c2w[:3, 3] - norm.center) * norm.scale
        return c2w, {"source_view": path.name}
    if params.source_view != "auto":
        index = int(params.source_view)
        return orbit("horizontal", params.frames, 8)[index].c2w, {"source_view": index}
    return choose_source_view(subjects[0], render_fn_, params.frames)


# ----------------------------------------------------------------------------- tracking

def geometry_correspond(views: list["ViewGeometry"], tolerance: float) -> "Correspond":
    from ..track.geometry import reproject

    def correspond(target: int, refs: Sequence[int]) -> list:
        v = views[target]
        return [(r, reproject(v.position, v.mask, views[r], tolerance, v.normal)) for r in refs]

    return correspond


def flow_correspond(images: "np.ndarray", masks: "np.ndarray", orbits: list[list[int]]) -> "Correspond":
    """Along the target's orbit towards the source, up to the first finished frame on the way."""
    from ..track.flow import FlowTracker, chain_paths

    tracker = FlowTracker(images, masks)
    paths: dict[int, list[int]] = {}
    for cycle in orbits:
        for local, path in enumerate(chain_paths(len(cycle), 0, cyclic=True)):
            if cycle[local] not in paths:
                paths[cycle[local]] = [cycle[p] for p in path]

    def correspond(target: int, refs: Sequence[int]) -> list:
        path = paths[target]
        finished = set(refs)
        stop = next((k for k, f in enumerate(path) if f in finished and k > 0), len(path) - 1)
        return [(path[stop], tracker.follow(path[:stop + 1]))]

    return correspond


def make_correspond(params: Params, rendered: Rendered, tolerance: float) -> "Correspond":
    if params.tracker == "geometry":
        return geometry_correspond(rendered.views, tolerance)
    if params.tracker == "flow":
        return flow_correspond(rendered.images, rendered.masks, rendered.orbits)
    return cotracker_correspond(rendered, flow_correspond(rendered.images, rendered.masks, rendered.orbits))


COTRACKER_GRID = 4  # pixels between CoTracker query points


def cotracker_correspond(rendered: Rendered, flow: "Correspond") -> "Correspond":
    """CoTracker3 (backward tracking of a query grid, per orbit) says which pixels of each frame
    the source saw: a pixel is seen when a visible track lands within a grid step of it. Colours
    still come through the chained flow, so a pixel counts as seen where both agree."""
    import numpy as np

    from ..track.geometry import Correspondence
    from ..track.masks import dilate

    module = _cotracker()
    seen = np.zeros(rendered.masks.shape, dtype=bool)
    for cycle in rendered.orbits:
        coords, visible = module.track_backward(rendered.images[cycle], 0, COTRACKER_GRID)
        for local, frame in enumerate(cycle):
            xy = np.round(coords[local][visible[local]]).astype(np.int64)
            h, w = rendered.masks.shape[1:]
            ok = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
            hit = np.zeros((h, w), dtype=bool)
            hit[xy[ok, 1], xy[ok, 0]] = True
            seen[frame] |= dilate(hit, COTRACKER_GRID // 2 + 1, within=rendered.masks[frame])

    def correspond(target: int, refs: Sequence[int]) -> list:
        return [(ref, Correspondence(c.coords, c.seen & seen[target])) for ref, c in flow(target, refs)]

    return correspond


# ----------------------------------------------------------------------------- inpainting

def make_inpainter(params: Params, subjects: list[Path], progress: Progress):  # type: ignore[no-untyped-def]
    """The chosen inpainter; sd-inpaint with the subject LoRA (trained once per subject and settings,
    cached in sd_inpaint.lora_cache_dir()) unless `train_lora` is off."""
    from ..models.inpaint import load_inpainter

    if params.inpainter == "opencv":
        return load_inpainter("opencv", method=params.opencv_method)
    lora = None
    if params.train_lora:
        import importlib

        from ..assets.images import read_image

        sd = importlib.import_module("backend.models.sd_inpaint")
        images = [_on_background(read_image(p)) for p in subjects]
        lora = sd.train_subject_lora(images, params.model, sd.lora_cache_dir(), steps=params.lora_steps, seed=params.seed,
                                     device=params.device, progress=lambda f: progress(f, "training the subject LoRA"))
    return load_inpainter("sd-inpaint", model=params.model, strength=params.strength, lora=lora, seed=params.seed,
                          device=params.device)


def _on_background(image: "np.ndarray") -> "np.ndarray":
    """RGB of a photo, a transparent one composited over the render background (as the frames are)."""
    import numpy as np

    if image.shape[2] < 4:
        return image[..., :3]
    alpha = image[..., 3:4]
    return (image[..., :3] * alpha + (1.0 - alpha) * np.asarray(BACKGROUND, dtype=np.float32)).astype(np.float32)


def refine_frames(rendered: Rendered, params: Params, inpainter, tolerance: float, progress: Progress):  # type: ignore[no-untyped-def]
    from .refine_progressive import progressive_inpaint

    correspond = make_correspond(params, rendered, tolerance)
    return progressive_inpaint(rendered.images, rendered.masks, rendered.cameras, 0, params.anchors, correspond,
                               inpainter, params.prompt, params.dilate, BACKGROUND, progress=progress)


# ----------------------------------------------------------------------------- run

def _outputs(out: Path, kind: str, asset: Path) -> tuple[Path, Path]:
    suffixes = (".ply",) if kind == "gaussians" else (".glb", ".ply") if kind == "animated" else (".glb",)
    if out.suffix.lower() in (".glb", ".gltf", ".ply", ".obj") and out.suffix.lower() not in suffixes:
        raise InputError(f"--out {out.name}: a {kind} asset refines into {' or '.join(suffixes)}")
    main, side = output_paths(out, suffixes, "refined.ply" if kind == "gaussians" else "refined.glb")
    if main.suffix.lower() not in suffixes:
        raise InputError(f"--out {main.name}: a {kind} asset refines into {' or '.join(suffixes)}")
    if main.resolve() == asset.resolve():
        raise InputError(f"--out {main} would overwrite the asset")
    return main, side


def run(inputs: dict[str, Path], params: Params, out_dir: Path, progress: Progress) -> dict[str, Path]:
    inputs = {k: Path(v) for k, v in inputs.items() if v is not None}
    if "asset" not in inputs:
        raise InputError("refine needs the asset to refine (a textured mesh, 3DGS PLY or animated asset)")
    subjects = subject_paths(inputs)
    kind = asset_kind(inputs["asset"])
    main, side = _outputs(Path(out_dir), kind, inputs["asset"])
    check_models(params)
    side.mkdir(parents=True, exist_ok=True)
    main.parent.mkdir(parents=True, exist_ok=True)
    if kind == "mesh":
        from .refine_mesh import refine_mesh

        results, report = refine_mesh(inputs, subjects, params, main, side, progress)
    elif kind == "gaussians":
        from .refine_gaussians import refine_gaussians

        results, report = refine_gaussians(inputs, subjects, params, main, side, progress)
    else:
        from .refine_animated import refine_animated

        results, report = refine_animated(inputs, subjects, params, main, side, progress)
    report_path = side / "report.json"
    report_path.write_text(json.dumps({"params": asdict(params), "asset": kind, **report}, indent=2, default=str) + "\n")
    progress(1.0, "done")
    return {**results, "report": report_path}


def frames_sheet(rendered: Rendered, refined, path: Path, count: int = 8) -> Path:  # type: ignore[no-untyped-def]
    """Rows: input renders, unseen masks (red over the render), refined frames, for `count`
    frames of the horizontal orbit."""
    import numpy as np

    from ..assets.images import write_png

    cycle = rendered.orbits[0]
    pick = [cycle[int(i)] for i in np.linspace(0, len(cycle), count, endpoint=False)]
    before = np.concatenate([rendered.images[i] for i in pick], 1)
    tint = np.concatenate([np.where(refined.unseen[i][..., None], [1.0, 0.1, 0.1], rendered.images[i] * 0.6 + 0.4)
                           for i in pick], 1)
    after = np.concatenate([refined.images[i] for i in pick], 1)
    return write_png(path, np.concatenate([before, tint, after], 0).astype(np.float32))
