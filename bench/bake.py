"""Bake benchmark: synthetic ground truth, video-model-like corruption, every method, held-out views.

For each asset (bench/synthetic.py: text, plaid, thin): render 2 x 61-frame orbits (121 distinct
views) at 512^2 with 2x supersampling, corrupt them (1-3 px warps, colour jitter, slight blur),
bake with each method, then render the baked texture and the ground truth at 24 held-out views
(off both orbits) and print PSNR (over the object's pixels) and SSIM, and seconds per stage.
The baseline is `average` without alignment (the plain confidence-weighted average; `average` if
that row is not run) in the same process: the table gives method - baseline in dB. Method names
take variant suffixes: `-noseam` (no seam levelling), `-noalign` (no view alignment), `-nodetail` (mrf/greedy
without the frame-detail unary term, i.e. Ink3D's unary), `-noblend` (no feathering across seams).

  .venv/backend/bin/python bench/bake.py [--assets text,plaid,thin] [--methods mrf,mrf-noseam,mrf-noalign,greedy,average,average-noalign,optimize]
      [--frames 61] [--size 512] [--texture-size 2048] [--voxel-res 256] [--mrf-lambda 5] [--detail-weight 0.5] [--clean] [--threads N]
      [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.synthetic import corrupt, held_out_cameras, make_asset, render_views  # noqa: E402

METHODS = ("mrf", "mrf-noseam", "mrf-noalign", "mrf-nodetail", "greedy", "average", "average-noalign", "optimize")


def psnr_ssim(pred: np.ndarray, gt: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    from pytorch_msssim import ssim

    err = ((pred - gt) ** 2).mean(-1)[masks]
    psnr = -10 * math.log10(max(float(err.mean()), 1e-12))
    p = torch.as_tensor(pred).permute(0, 3, 1, 2)
    g = torch.as_tensor(gt).permute(0, 3, 1, 2)
    return psnr, float(ssim(p, g, data_range=1.0, size_average=True))


def run_asset(name: str, args: argparse.Namespace) -> list[dict]:
    from backend.bake.baker import bake
    from backend.bake.params import BakeParams
    from backend.assets.cameras import orbit

    asset = make_asset(name, texture_size=2048)
    cams = orbit("horizontal", args.frames, args.size) + orbit("vertical", args.frames, args.size)[1:]
    t = time.perf_counter()
    images, masks = render_views(asset.mesh, asset.texture, cams, supersample=2)
    t_render = time.perf_counter() - t
    t = time.perf_counter()
    if not args.clean:
        images = corrupt(images, seed=zlib.crc32(name.encode()) % 1000)  # stable across runs
    t_corrupt = time.perf_counter() - t
    held = held_out_cameras(24, args.size)
    gt_views, gt_masks = render_views(asset.mesh, asset.texture, held, supersample=2)
    print(f"[{name}] {len(cams)} views at {args.size}^2 rendered in {t_render:.1f} s, corrupted in {t_corrupt:.1f} s",
          flush=True)
    views = SimpleNamespace(cameras=cams, images=images, masks=None, names=[f"f{i:03d}" for i in range(len(cams))])
    # upper bound: the ground truth itself, resampled to the bake's texture size
    small = torch.nn.functional.interpolate(torch.as_tensor(asset.texture).permute(2, 0, 1)[None],
                                            size=(args.texture_size,) * 2, mode="area")[0].permute(1, 2, 0).numpy()
    pred, _ = render_views(asset.mesh, small, held, supersample=2)
    psnr, ssim = psnr_ssim(pred, gt_views, gt_masks)
    rows = [{"asset": name, "method": "gt-resampled", "psnr": round(psnr, 2), "ssim": round(ssim, 4), "seconds": 0.0}]
    print(f"[{name}] ground truth at {args.texture_size}^2: PSNR {psnr:.2f} dB  SSIM {ssim:.4f} (upper bound)", flush=True)
    for method in args.methods:
        base_method, *flags = method.split("-")  # variants: METHOD-noseam, -noalign, -nodetail, -noblend (combinable)
        params = BakeParams(method=base_method, texture_size=args.texture_size, voxel_res=args.voxel_res,
                            seam_levelling="noseam" not in flags, align="noalign" not in flags,
                            seam_blend="noblend" not in flags,
                            detail_weight=0.0 if "nodetail" in flags else args.detail_weight,
                            optimize_steps=args.optimize_steps, mrf_lambda=args.mrf_lambda)
        wall, cpu = time.perf_counter(), time.process_time()
        result = bake(asset.mesh, views, params)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        pred, _ = render_views(result.mesh, result.texture, held, supersample=2)
        psnr, ssim = psnr_ssim(pred, gt_views, gt_masks)
        row = {"asset": name, "method": method, "psnr": round(psnr, 2), "ssim": round(ssim, 4),
               "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "stages": result.report["seconds"],
               "voxels": result.report["voxels"], "unseen_fraction": round(result.report["unseen_fraction"], 4),
               "alignment": {k: v for k, v in result.report.get("alignment", {}).items() if k != "shift_px"},
               "label_seam_edges": result.report.get("label_seam_edges")}
        rows.append(row)
        stages = " ".join(f"{k}={v:.1f}" for k, v in result.report["seconds"].items())
        print(f"[{name}] {method:16s} PSNR {psnr:6.2f} dB  SSIM {ssim:.4f}  {wall:6.1f} s wall "
              f"({cpu:.1f} s cpu)  [{stages}]" + (f"  align {row['alignment']}" if row["alignment"] else "")
              + (f"  seam edges {row['label_seam_edges']}" if row["label_seam_edges"] else ""),
              flush=True)
    base = next((r for r in rows if r["method"] == "average-noalign"), None)
    base = base or next((r for r in rows if r["method"] == "average"), None)
    if base:
        for r in rows:
            r["psnr_vs_average"] = round(r["psnr"] - base["psnr"], 2)
            r["time_vs_average"] = round(r["seconds"] / max(base["seconds"], 1e-9), 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default="text,plaid,thin")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--frames", type=int, default=61)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--voxel-res", type=int, default=256)
    parser.add_argument("--optimize-steps", type=int, default=100)
    parser.add_argument("--mrf-lambda", type=float, default=5.0, help="Potts weight (Ink3D: 5)")
    parser.add_argument("--detail-weight", type=float, default=0.5, help="frame-detail unary weight (default 0.5)")
    parser.add_argument("--clean", action="store_true", help="skip the corruption")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    args.methods = [m for m in args.methods.split(",") if m]
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for name in args.assets.split(","):
        rows += run_asset(name, args)
    print("\nasset   method            PSNR dB  SSIM    vs average  seconds")
    for r in rows:
        print(f"{r['asset']:7s} {r['method']:16s} {r['psnr']:7.2f}  {r['ssim']:.4f}  "
              f"{r.get('psnr_vs_average', float('nan')):+6.2f} dB  {r['seconds']:7.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
