"""Bake benchmark: synthetic ground truth, video-model-like corruption, every method, held-out views.

Two suites. `--suite sparse` (the default, made so the bench does not flatter the method): 32
cameras at random azimuths, elevations (-50..70 deg) and distances at 256^2, corruption drawn per
frame with a random strength (bench/synthetic.corrupt_random: from near-clean to a 4.5 px warp),
assets with fine print ("print", "text") and with large flat colours ("flat") besides "thin";
held-out views are 24 random ones ("held") and 8 grazing ones ("grazing": steep, along the
sides, and close oblique); `--renderer cycles` renders the training views with Blender's Cycles
(bench/render_cycles.py) instead of the project's rasterizer, so the data is unlike what the bake
is tuned on. Methods default to mrf, greedy, average, optimize (= average, then the texture fit that
mrf and greedy end with too); the table gives each method's dB
and time against `average` (and mrf against greedy).
`--suite orbit` is the earlier setting, described next.

For each asset (bench/synthetic.py: text, plaid, thin): render 2 x 61-frame orbits (121 distinct
views) at 512^2 with 2x supersampling, corrupt them (1-3 px warps, colour jitter, slight blur),
bake with each method, then render the baked texture and the ground truth at 24 held-out views
(off both orbits) and print PSNR (over the object's pixels) and SSIM, and seconds per stage.
The baseline is `average` without alignment (the plain confidence-weighted average; `average` if
that row is not run) in the same process: the table gives method - baseline in dB. Method names
take variant suffixes (VARIANTS): `-noseam` (no seam levelling), `-noalign` (no view alignment), `-nodetail`
(mrf/greedy without the frame-detail unary term, i.e. Ink3D's unary), `-noblend` (no feathering across seams),
`-cons` (mrf/greedy with the per-voxel consistency unary, `--consistency-weight`), `-nosharp`,
`-noresolution`, `-hard` (mrf/greedy without soft selection: the label's view alone), `-nofit` (no texture fit, fit.py), `-p1` (one of the 2026-12-04 changes off: one alignment pass), `-prev` (all of them off: the code before).

  .venv/backend/bin/python bench/bake.py [--assets text,plaid,thin] [--methods mrf,mrf-noseam,mrf-noalign,greedy,average,average-noalign,optimize]
      [--frames 61] [--size 512] [--texture-size 2048] [--voxel-res 256] [--mrf-lambda L] [--detail-weight W] [--clean] [--threads N]
      [--json OUT] [--sheet PNG]
`--sheet` writes a close-up of each texture (the middle 200² texels, x2, no filtering) beside the
ground truth's: what an artist sees up close, which a PSNR at the views' size does not show.
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

from bench.synthetic import (corrupt, corrupt_random, grazing_cameras, held_out_cameras, make_asset,  # noqa: E402
                             render_views, sphere_cameras)

# method variants (METHOD-FLAG, combinable): BakeParams fields changed from their defaults
VARIANTS: dict[str, dict] = {
    "noseam": {"seam_levelling": False}, "noalign": {"align": False}, "noblend": {"seam_blend": False},
    "nodetail": {"detail_weight": 0.0},  # mrf/greedy with Ink3D's unary
    "cons": {},  # the per-voxel consistency unary at --consistency-weight
    "nosharp": {"sharpen": 0.0}, "p1": {"align_passes": 1},
    "noresolution": {"resolution_weight": 0.0},
    "hard": {"soft_selection": 0.0},  # mrf/greedy: the label's view alone per texel (before 2026-12-04's soft selection)
    "nofit": {"fit_steps": 0},  # mrf/greedy without the texture fit (before fit.py)
    # the defaults before the sparse-suite work of 2026-12-04 (issue 13)
    "prev": {"sharpen": 0.0, "align_passes": 1, "resolution_weight": 0.0, "mrf_lambda": 5.0, "soft_selection": 0.0,
             "fit_steps": 0},
}
METHODS = ("mrf", "mrf-noseam", "mrf-noalign", "mrf-nodetail", "greedy", "average", "average-noalign", "optimize")


def psnr_ssim(pred: np.ndarray, gt: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    from pytorch_msssim import ssim

    err = ((pred - gt) ** 2).mean(-1)[masks]
    psnr = -10 * math.log10(max(float(err.mean()), 1e-12))
    p = torch.as_tensor(pred).permute(0, 3, 1, 2)
    g = torch.as_tensor(gt).permute(0, 3, 1, 2)
    return psnr, float(ssim(p, g, data_range=1.0, size_average=True))


def render_cycles(asset, cams, samples: int = 16) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """The training views rendered by Cycles (bench/render_cycles.py under the bpy interpreter)."""
    import subprocess
    import tempfile

    from backend.assets.images import read_image, write_png

    python = os.environ.get("ORBITEX_BLENDER_PYTHON", str(Path(__file__).resolve().parents[1] / ".venv/blender/bin/python"))
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(f"{tmp}/m.npz", positions=asset.mesh.positions, faces=asset.mesh.faces, uvs=asset.mesh.uvs)
        write_png(f"{tmp}/t.png", asset.texture)
        job = {"mesh": f"{tmp}/m.npz", "texture": f"{tmp}/t.png", "samples": samples, "out": f"{tmp}/out",
               "cameras": [{"c2w": c.c2w.tolist(), "fx": c.fx, "w": c.width, "h": c.height} for c in cams]}
        Path(f"{tmp}/job.json").write_text(json.dumps(job))
        subprocess.run([python, str(Path(__file__).with_name("render_cycles.py")), f"{tmp}/job.json"], check=True,
                       stdout=subprocess.DEVNULL)
        rgba = np.stack([read_image(Path(tmp) / "out" / f"{i:04d}.png") for i in range(len(cams))])
    alpha = rgba[..., 3:]
    return (rgba[..., :3] * alpha + (1 - alpha)).astype(np.float32), alpha[..., 0] > 0.5  # over white, as ours


def _close_up(texture: np.ndarray) -> np.ndarray:
    """uint8 (400, 400, 3): the texture's middle 200 x 200 texels, each 2 x 2 pixels."""
    y, x = texture.shape[0] // 2 - 100, texture.shape[1] // 2 - 100
    crop = np.clip(texture[y:y + 200, x:x + 200, :3], 0, 1)
    return (np.repeat(np.repeat(crop, 2, 0), 2, 1) * 255 + 0.5).astype(np.uint8)


def run_asset(name: str, args: argparse.Namespace, sheet: list | None = None) -> list[dict]:
    from backend.bake.baker import bake
    from backend.bake.params import BakeParams
    from backend.assets.cameras import orbit

    # sparse: a 1024^2 texture and 4x supersampling, so 256^2 views are anti-aliased (no texture aliasing)
    asset = make_asset(name, texture_size=1024 if args.suite == "sparse" else 2048)
    ss = 4 if args.suite == "sparse" else 2
    seed = zlib.crc32(name.encode()) % 1000  # stable across runs
    if args.suite == "sparse":
        cams = sphere_cameras(args.views, args.size, seed)
    else:
        cams = orbit("horizontal", args.frames, args.size) + orbit("vertical", args.frames, args.size)[1:]
    t = time.perf_counter()
    if args.renderer == "cycles":
        images, masks = render_cycles(asset, cams)
    else:
        images, masks = render_views(asset.mesh, asset.texture, cams, supersample=ss)
    t_render = time.perf_counter() - t
    t = time.perf_counter()
    if not args.clean:
        images = corrupt_random(images, seed=seed) if args.suite == "sparse" else corrupt(images, seed=seed)
    t_corrupt = time.perf_counter() - t
    held = held_out_cameras(24, args.size)
    splits = {"held": slice(0, 24)}
    if args.suite == "sparse":
        held = held + grazing_cameras(8, args.size, seed + 1)
        splits["grazing"] = slice(24, 32)
    gt_views, gt_masks = render_views(asset.mesh, asset.texture, held, supersample=ss)
    print(f"[{name}] {len(cams)} views at {args.size}^2 rendered ({args.renderer}) in {t_render:.1f} s, corrupted "
          f"in {t_corrupt:.1f} s", flush=True)
    views = SimpleNamespace(cameras=cams, images=images, masks=None, names=[f"f{i:03d}" for i in range(len(cams))])
    # upper bound: the ground truth itself, resampled to the bake's texture size
    small = torch.nn.functional.interpolate(torch.as_tensor(asset.texture).permute(2, 0, 1)[None],
                                            size=(args.texture_size,) * 2, mode="area")[0].permute(1, 2, 0).numpy()
    pred, _ = render_views(asset.mesh, small, held, supersample=ss)
    psnr, ssim = psnr_ssim(pred, gt_views, gt_masks)
    rows = [{"asset": name, "method": "gt-resampled", "psnr": round(psnr, 2), "ssim": round(ssim, 4), "seconds": 0.0}]
    close_ups = [_close_up(small)]
    print(f"[{name}] ground truth at {args.texture_size}^2: PSNR {psnr:.2f} dB  SSIM {ssim:.4f} (upper bound)", flush=True)
    for method in args.methods:
        base_method, *flags = method.split("-")  # variants: METHOD-FLAG-FLAG..., see VARIANTS
        unknown = [f for f in flags if f not in VARIANTS]
        if unknown:
            raise SystemExit(f"unknown method variant {unknown}; known: {', '.join(VARIANTS)}")
        options = {k: v for k, v in (("mrf_lambda", args.mrf_lambda), ("detail_weight", args.detail_weight)) if v is not None}
        for flag in flags:
            options.update(VARIANTS[flag] if flag != "cons" else {"consistency_weight": args.consistency_weight})
        params = BakeParams(method=base_method, texture_size=args.texture_size, voxel_res=args.voxel_res,
                            **({"fit_steps": args.fit_steps} if args.fit_steps is not None else {}), **options)
        wall, cpu = time.perf_counter(), time.process_time()
        result = bake(asset.mesh, views, params)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        pred, _ = render_views(result.mesh, result.texture, held, supersample=ss)
        psnr, ssim = psnr_ssim(pred, gt_views, gt_masks)
        split_psnr = {k: round(psnr_ssim(pred[sl], gt_views[sl], gt_masks[sl])[0], 2) for k, sl in splits.items()}
        row = {"asset": name, "method": method, "psnr": round(psnr, 2), "ssim": round(ssim, 4), "splits": split_psnr,
               "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "stages": result.report["seconds"],
               "voxels": result.report["voxels"], "unseen_fraction": round(result.report["unseen_fraction"], 4),
               "alignment": {k: v for k, v in result.report.get("alignment", {}).items() if k != "shift_px"},
               "label_seam_edges": result.report.get("label_seam_edges"), "fit": result.report.get("fit")}
        rows.append(row)
        close_ups.append(_close_up(result.texture))
        stages = " ".join(f"{k}={v:.1f}" for k, v in result.report["seconds"].items())
        print(f"[{name}] {method:16s} PSNR {psnr:6.2f} dB {split_psnr} SSIM {ssim:.4f}  {wall:6.1f} s wall "
              f"({cpu:.1f} s cpu)  [{stages}]" + (f"  align {row['alignment']}" if row["alignment"] else "")
              + (f"  seam edges {row['label_seam_edges']}" if row["label_seam_edges"] else ""),
              flush=True)
    base = next((r for r in rows if r["method"] == "average-noalign"), None)
    base = base or next((r for r in rows if r["method"] == "average"), None)
    greedy = next((r for r in rows if r["method"] == "greedy"), None)
    if base:
        for r in rows:
            r["psnr_vs_average"] = round(r["psnr"] - base["psnr"], 2)
            r["time_vs_average"] = round(r["seconds"] / max(base["seconds"], 1e-9), 2)
            r["splits_vs_average"] = {k: round(v - base["splits"][k], 2) for k, v in r.get("splits", {}).items()}
            if greedy is not None:
                r["psnr_vs_greedy"] = round(r["psnr"] - greedy["psnr"], 2)
    if sheet is not None:
        sheet.append((name, close_ups))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("sparse", "orbit"), default="sparse")
    parser.add_argument("--renderer", choices=("raster", "cycles"), default="raster",
                        help="training views: the project's rasterizer or Blender's Cycles (bpy env)")
    parser.add_argument("--assets", help="default: print,flat,text,thin (sparse) or text,plaid,thin (orbit)")
    parser.add_argument("--methods", help="default: mrf,greedy,average,optimize (sparse) or all variants (orbit)")
    parser.add_argument("--views", type=int, default=32, help="sparse suite: training cameras")
    parser.add_argument("--frames", type=int, default=61, help="orbit suite: frames per orbit")
    parser.add_argument("--size", type=int, help="view side (default 256 sparse, 512 orbit)")
    parser.add_argument("--texture-size", type=int, help="default 1024 sparse, 2048 orbit")
    parser.add_argument("--voxel-res", type=int, default=256)
    parser.add_argument("--fit-steps", type=int, help="texture fit steps (default: BakeParams')")
    parser.add_argument("--mrf-lambda", type=float, help="Potts weight (default: BakeParams'; Ink3D: 5)")
    parser.add_argument("--detail-weight", type=float, help="frame-detail unary weight (default: BakeParams')")
    parser.add_argument("--consistency-weight", type=float, default=1.0,
                        help="weight of the consistency unary in the -cons variants (default 1)")
    parser.add_argument("--clean", action="store_true", help="skip the corruption")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--sheet", help="write texture close-ups (ground truth, then each method) to this PNG")
    args = parser.parse_args()
    sparse = args.suite == "sparse"
    args.assets = args.assets or ("print,flat,text,thin" if sparse else "text,plaid,thin")
    args.methods = [m for m in (args.methods or ("mrf,greedy,average,optimize" if sparse else ",".join(METHODS))).split(",") if m]
    args.size = args.size or (256 if sparse else 512)
    args.texture_size = args.texture_size or (1024 if sparse else 2048)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    rows: list[dict] = []
    sheet: list | None = [] if args.sheet else None
    for name in args.assets.split(","):
        rows += run_asset(name, args, sheet)
    if sheet:
        from backend.assets.images import write_png
        from backend.render.contact_sheet import contact_sheet

        write_png(args.sheet, contact_sheet([c for _, c in sheet], [n for n, _ in sheet], tile=400,
                                            captions=["ground truth", *args.methods]))
        print(f"close-ups: {args.sheet}")
    print(f"\nsuite {args.suite}, renderer {args.renderer}, load average {os.getloadavg()[0]:.1f}")
    print("asset   method            PSNR dB  SSIM    vs average  vs greedy  held / grazing vs average  seconds (x average)")
    for r in rows:
        split = " / ".join(f"{v:+.2f}" for v in r.get("splits_vs_average", {}).values())
        print(f"{r['asset']:7s} {r['method']:16s} {r['psnr']:7.2f}  {r['ssim']:.4f}  "
              f"{r.get('psnr_vs_average', float('nan')):+6.2f} dB  {r.get('psnr_vs_greedy', float('nan')):+6.2f} dB  "
              f"{split:22s} {r['seconds']:7.1f} ({r.get('time_vs_average', float('nan')):.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
