"""Benchmark: weight-free `texture` (projection generator) end to end.

1. The bundled sample (samples/vase.glb + samples/vase_reference.png), 2 x 61 frames at 512^2:
   seconds per stage (target <= 90 s in total on the 2-core CPU machine).
2. A synthetic case with ground truth: a UV-mapped lathe mesh with a procedural texture, its
   front view rendered as the reference; the result's front view against the reference
   (PSNR over the subject, target >= 30 dB), and against a baseline in the same process: the
   texture baked from the reference view alone (bake of that one view), which shows what the
   orbit generation + 122-view bake keeps of the reference.

Run: .venv/backend/bin/python bench/texture.py [--frames 61] [--size 512]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "backend"))


def run_texture(mesh: Path, image: Path, out: Path, frames: int, size: int, texture_size: int) -> tuple[dict, float]:
    from backend.pipelines import parse_params, texture
    from backend.progress import no_progress

    params = parse_params(texture.Params, {"frames": frames, "size": size, "texture_size": texture_size})
    start = time.perf_counter()
    files = texture.run({"mesh": mesh, "image": image}, params, out, no_progress)
    return files, time.perf_counter() - start


def front_view(mesh_path: Path, texture_png: Path, size: int) -> np.ndarray:
    from backend.assets.images import read_image
    from backend.assets.mesh import load_mesh, normalize
    from backend.pipelines.texture import reference_camera, sample_texture
    from backend.render.gbuffer import render_gbuffers

    mesh = load_mesh(mesh_path)
    norm_mesh, norm = normalize(mesh)
    camera, _ = reference_camera(size, size, norm)
    g = render_gbuffers(norm_mesh, [camera])
    return sample_texture(mesh, read_image(texture_png)[..., :3], g.tri_id, g.bary, g.mask)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=61)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--texture-size", type=int, default=2048)
    args = parser.parse_args()
    from texture_helpers import lathe_mesh, procedural_texture, psnr, render_reference, save_glb, write_rgba

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files, seconds = run_texture(ROOT / "samples" / "vase.glb", ROOT / "samples" / "vase_reference.png",
                                     tmp / "vase.glb", args.frames, args.size, args.texture_size)
        report = json.loads(files["report"].read_text())
        print(f"sample vase, 2 x {args.frames} frames at {args.size}^2, texture {args.texture_size}^2: "
              f"{seconds:.1f} s end to end")
        for stage, value in report["seconds"].items():
            print(f"  {stage:<16} {value:7.2f} s")
        print("  bake stages: " + ", ".join(f"{k} {v:.1f}" for k, v in report["bake"]["seconds"].items()))

        positions, faces, uvs = lathe_mesh(128, 64)
        rgb, mask = render_reference(positions, faces, uvs, procedural_texture(512), args.size)
        mesh = save_glb(tmp / "synthetic.glb", positions, faces, uvs)
        image = write_rgba(tmp / "synthetic_ref.png", rgb, mask)
        files, seconds = run_texture(mesh, image, tmp / "synthetic_out.glb", args.frames, args.size, args.texture_size)
        ours = psnr(front_view(mesh, files["texture"], args.size), rgb, mask)

        # baseline: bake the reference view alone (one view, same bake)
        from backend.assets.mesh import load_mesh, normalize
        from backend.assets.viewset import ViewSet
        from backend.bake.baker import bake
        from backend.bake.params import BakeParams
        from backend.pipelines.texture import reference_camera
        from backend.render.cameras import Camera

        loaded = load_mesh(mesh)
        _, norm = normalize(loaded)
        cam, _ = reference_camera(args.size, args.size, norm)
        c2w = cam.c2w.copy()
        c2w[:3, 3] = norm.invert(c2w[None, :3, 3])[0]
        one = ViewSet([Camera(c2w, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height)], rgb[None], mask[None],
                      ["reference"])
        start = time.perf_counter()
        single = bake(loaded, one, BakeParams(texture_size=args.texture_size))
        single_s = time.perf_counter() - start
        from backend.assets.images import write_png

        base_png = write_png(tmp / "single.png", single.texture)
        baseline = psnr(front_view(mesh, base_png, args.size), rgb, mask)
        print(f"synthetic lathe (ground truth), front view vs reference: {ours:.2f} dB "
              f"(texture end to end {seconds:.1f} s); baseline single-view bake: {baseline:.2f} dB "
              f"({single_s:.1f} s); difference {ours - baseline:+.2f} dB")


if __name__ == "__main__":
    main()
