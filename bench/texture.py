"""Benchmark: weight-free `texture` (projection generator) end to end.

1. The bundled sample (samples/vase.glb + samples/vase_reference.png), 2 x 61 frames at 512^2:
   seconds per stage (target <= 90 s in total on the 2-core CPU machine).
2. A synthetic case with ground truth: a UV-mapped lathe mesh with a procedural texture, its
   front view rendered as the reference; the result's front view against the reference
   (PSNR over the subject, target >= 30 dB), and against a baseline in the same process: the
   texture baked from the reference view alone (bake of that one view), which shows what the
   orbit generation + 122-view bake keeps of the reference.

Run: .venv/backend/bin/python bench/texture.py [--frames 61] [--size 512]

`--beside-load` instead times the sample vase quiet and then with a second CPU-bound process
running beside it (target <= 1.5x the quiet time), each with the threads that backend/threads.py
picks as the CLI does, and once more beside it with every core's threads (what a job did before
threads.py); see beside_load().
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


def beside_load(frames: int, size: int, texture_size: int) -> None:
    """The sample vase quiet, then beside a CPU-bound process (a pure-Python busy loop, one core).
    Threads per run from backend.threads.configure(0), as the CLI and the worker set them; a third
    run beside the load with threads for every core shows what the choice saves."""
    import subprocess

    from backend import threads

    def run(label: str, thread_count: int) -> float:
        used = threads.configure(thread_count)  # the CLI also re-picks them while it runs: threads.Rebalancing
        with tempfile.TemporaryDirectory() as tmp:
            _, seconds = run_texture(ROOT / "samples" / "vase.glb", ROOT / "samples" / "vase_reference.png",
                                     Path(tmp) / "vase.glb", frames, size, texture_size)
        print(f"  {label:<34} {used} thread(s): {seconds:6.1f} s", flush=True)
        return seconds

    print(f"sample vase, 2 x {frames} frames at {size}^2, texture {texture_size}^2, beside a second CPU-bound process:")
    quiet = run("quiet", 0)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        loaded = run("beside the busy process", 0)
        every = run("beside it, threads for every core", threads.usable_cores())
    finally:
        busy.kill()
        busy.wait()
    print(f"  ratio beside / quiet: {loaded / quiet:.2f}x with threads.py's choice (target <= 1.5x), "
          f"{every / quiet:.2f}x with every core's threads")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=61)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--beside-load", action="store_true", help="time the sample quiet and beside a busy process")
    args = parser.parse_args()
    if args.beside_load:
        beside_load(args.frames, args.size, args.texture_size)
        return
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
