"""Refine benchmark: a subject whose back was replaced by a wrong texture, refined weight-free.

The subject: the can of bench/synthetic.py with a label of colour bands all round (the truth:
bands of distinct colours and widths up the can, a slow colour wave and a fine weave around it). The asset: the same
can whose back half (texels facing away from the front view) carries a wrong texture (grey-green
blocks). The subject photo: the truth rendered from the front. The asset is refined with the
weight-free path (geometry tracking, opencv inpainter) twice in one process: progressive
(anchors 20, 90, 180) and single-stage (anchors 180: every frame painted from the source alone).
Measured: PSNR (subject pixels) / SSIM of held-out back views (azimuth 135-225 deg, elevation -20..20,
off the refine orbits) against the truth, for the input asset, single-stage and progressive; the
source view's seen pixels before/after (max abs diff; interior pixels, 2 px from the silhouette);
forward vs backward unseen masks (connected components per frame, over the orbit); seconds
(frames refined per second, progressive vs single-stage). Images: bench/out/refine_*.png.

  .venv/backend/bin/python bench/refine.py [--frames 24] [--size 128] [--texture-size 256] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.synthetic import block_texture, can_mesh, render_views  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def psnr_ssim(pred: np.ndarray, gt: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    import torch
    from pytorch_msssim import ssim

    err = ((pred - gt) ** 2).mean(-1)[masks]
    psnr = -10 * math.log10(max(float(err.mean()), 1e-12))
    p, g = (torch.as_tensor(x).permute(0, 3, 1, 2) for x in (pred, gt))
    return psnr, float(ssim(p, g, data_range=1.0, size_average=True, win_size=7))


def band_texture(size: int) -> np.ndarray:
    """Colour bands up the can (v), a slow wave and a fine weave around it (u): the pattern is the
    same all round, so what the front shows says what the back should be."""
    rng = np.random.default_rng(5)
    edges = np.sort(rng.random(9))
    colours = rng.random((10, 3)) * 0.75 + 0.15
    yy, xx = np.mgrid[0:size, 0:size] / size
    rgb = colours[np.searchsorted(edges, yy)]
    rgb = rgb * (0.85 + 0.15 * np.sin(2 * math.pi * 2 * xx))[..., None]
    rgb = rgb * (0.92 + 0.08 * np.sign(np.sin(2 * math.pi * 48 * (xx + yy))))[..., None]
    return np.clip(rgb, 0, 1).astype(np.float32)


def wrong_back(mesh, truth: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The truth with every texel whose surface point lies behind the can's middle (z < -0.02)
    replaced by a wrong texture: the front view (on +Z) never sees those."""
    from backend.bake.uv_raster import texel_samples

    size = truth.shape[0]
    texels = texel_samples(mesh, size)
    back = texels.position[:, 2] < -0.02
    wrong = block_texture(size, seed=3) * np.array([0.5, 0.8, 0.5], np.float32) + 0.1
    out = truth.copy()
    out[texels.rows[back], texels.cols[back]] = wrong[texels.rows[back], texels.cols[back]]
    return out


def back_cameras(size: int):  # type: ignore[no-untyped-def]
    from backend.assets.cameras import ORBIT_RADIUS, ORBIT_VFOV_DEG, Camera, look_at

    cams = []
    for az in (140, 165, 190, 215):
        for el in (-20, 10):
            a, e = math.radians(az), math.radians(el)
            eye = ORBIT_RADIUS * np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
            cams.append(Camera.from_fov(look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0])), ORBIT_VFOV_DEG, size, size))
    return cams


def glb(path: Path, mesh, texture: np.ndarray) -> Path:  # type: ignore[no-untyped-def]
    import trimesh
    from PIL import Image

    image = Image.fromarray((np.clip(texture, 0, 1) * 255 + 0.5).astype(np.uint8))
    visual = trimesh.visual.TextureVisuals(uv=mesh.uvs, material=trimesh.visual.material.PBRMaterial(baseColorTexture=image))
    trimesh.Trimesh(mesh.positions, mesh.faces, process=False, visual=visual).export(path)
    return path


def mask_coherence(mesh, frames: int, size: int) -> dict:  # type: ignore[no-untyped-def]
    """Connected components of forward (source -> target) and backward (target -> source) unseen
    masks over the horizontal orbit (frames within 10-170 deg of the source)."""
    from backend.assets.cameras import orbit
    from backend.render.gbuffer import render_gbuffers
    from backend.track.geometry import DEPTH_TOLERANCE, backward_unseen, forward_unseen, mesh_view_geometry
    from backend.track.masks import components

    cams = orbit("horizontal", frames, size)
    views = mesh_view_geometry(render_gbuffers(mesh, cams), cams)
    tol = DEPTH_TOLERANCE * float((mesh.positions.max(0) - mesh.positions.min(0)).max())
    rows = []
    for i in range(1, frames):
        angle = 360.0 * i / frames
        if not 10 <= min(angle, 360 - angle) <= 170:
            continue
        fwd, bwd = forward_unseen(views[0], views[i], tol), backward_unseen(views[i], views[0], tol)
        rows.append((components(fwd), components(bwd), int(fwd.sum()), int(bwd.sum())))
    arr = np.array(rows, dtype=np.float64)
    return {"frames": len(rows), "forward_components_mean": round(float(arr[:, 0].mean()), 2),
            "backward_components_mean": round(float(arr[:, 1].mean()), 2),
            "forward_unseen_px_mean": round(float(arr[:, 2].mean()), 1),
            "backward_unseen_px_mean": round(float(arr[:, 3].mean()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--texture-size", type=int, default=256)
    parser.add_argument("--opencv-method", default="telea", choices=["telea", "shiftmap"])
    parser.add_argument("--json")
    args = parser.parse_args()

    from backend.assets.material import load_textured_mesh
    from backend.pipelines import parse_params, refine
    from backend.progress import no_progress
    from backend.assets.cameras import orbit
    from backend.track.masks import dilate

    mesh = can_mesh(n=64)
    truth = band_texture(args.texture_size)
    asset_tex = wrong_back(mesh, truth)
    OUT.mkdir(exist_ok=True)
    held = back_cameras(args.size * 2)
    gt_views, gt_masks = render_views(mesh, truth, held)
    front = orbit("horizontal", 1, args.size * 2)
    report: dict = {"date": "2026-12-03", "frames": args.frames, "size": args.size, "texture_size": args.texture_size}
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="orbitex_bench_refine_") as tmp:
        folder = Path(tmp)
        asset = glb(folder / "asset.glb", mesh, asset_tex)
        photo, _ = render_views(mesh, truth, front)
        from backend.assets.images import write_png

        subject = write_png(folder / "subject.png", photo[0])
        input_views, _ = render_views(mesh, asset_tex, held)
        results["input"] = {"views": input_views}
        for name, anchors in (("single-stage", [180.0]), ("progressive", [20.0, 90.0, 180.0])):
            params = parse_params(refine.Params, {"frames": args.frames, "size": args.size, "source_view": "auto",
                                                  "anchors": anchors, "bake": {"voxel_res": 128},
                                                  "opencv_method": args.opencv_method})
            t = time.perf_counter()
            out = refine.run({"asset": asset, "subject": subject}, params, folder / f"{name}.glb", no_progress)
            seconds = time.perf_counter() - t
            _, tex = load_textured_mesh(out["glb"])
            views, _ = render_views(mesh, tex, held)
            src_before, src_mask = render_views(mesh, asset_tex, front)
            src_after, _ = render_views(mesh, tex, front)
            inner = src_mask[0] & ~dilate(~src_mask[0], 2)
            rep = json.loads(Path(out["report"]).read_text())
            results[name] = {"views": views, "seconds": seconds, "texture": tex,
                             "seen_max_abs_diff": float(np.abs(src_after[0][inner] - src_before[0][inner]).max()),
                             "source": rep["source"]}
            (OUT / f"refine_{name}_frames.png").write_bytes(Path(out["frames"]).read_bytes())
    n_frames = 2 * args.frames - 1
    print(f"refine benchmark: can with colour bands all round, back replaced; {n_frames} frames at {args.size}^2, "
          f"texture {args.texture_size}^2; 8 held-out back views at {args.size * 2}^2")
    rows = []
    for name in ("input", "single-stage", "progressive"):
        r = results[name]
        psnr, ssim = psnr_ssim(r["views"], gt_views, gt_masks)
        row = {"variant": name, "back_psnr": round(psnr, 2), "back_ssim": round(ssim, 4)}
        if "seconds" in r:
            row.update({"seconds": round(r["seconds"], 1), "frames_per_s": round(n_frames / r["seconds"], 2),
                        "seen_max_abs_diff_x255": round(r["seen_max_abs_diff"] * 255, 3)})
        rows.append(row)
        print("  " + "  ".join(f"{k} {v}" for k, v in row.items()))
    print(f"  source view chosen: {results['progressive']['source']}")
    prog, single = rows[2], rows[1]
    print(f"  progressive - input: {prog['back_psnr'] - rows[0]['back_psnr']:+.2f} dB; progressive - single-stage: "
          f"{prog['back_psnr'] - single['back_psnr']:+.2f} dB; time ratio progressive / single-stage "
          f"{prog['seconds'] / single['seconds']:.2f}")
    coherence = mask_coherence(mesh, args.frames, args.size)
    print(f"  unseen-mask components per frame: forward {coherence['forward_components_mean']} vs backward "
          f"{coherence['backward_components_mean']} ({coherence['frames']} frames)")
    report.update({"rows": rows, "mask_coherence": coherence, "source": results["progressive"]["source"]})
    strip = [np.concatenate([gt_views[i], results["input"]["views"][i], results["single-stage"]["views"][i],
                             results["progressive"]["views"][i]], 1) for i in (2, 4)]
    from backend.assets.images import write_png

    write_png(OUT / "refine_back_views.png", np.concatenate(strip, 0))
    print(f"  images: {OUT}/refine_back_views.png (truth | input | single-stage | progressive), refine_*_frames.png")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
