"""Back completion benchmark: weight-free completion vs the naive extrusion, on a family of shapes
and scanners.

24 ground-truth shapes (bench/complete_shapes.py: smooth, CAD-like, pairs) x 3 scan setups:
- `persp`: the project's perspective depth render (bench/depth_scan.py), depth noise 0.0015, a
  random orientation;
- `ortho`: an orthographic structured-light style point set with normals (bench/point_scan.py, a
  different simulator), clean, the shape head-on (its characteristic face towards the scanner,
  within 6 degrees);
- `ortho-noisy`: the same scanner with depth noise 0.002, normal jitter and dropouts (discs of
  missing points), another random orientation.
Each scan is completed (complete_geometric) and extruded (bench/extrude.py: the same front map,
a constant thickness = the front's depth range), and both are compared with the truth:
Chamfer-L1 and F-score at 1 % of the truth's bounding-box diagonal, front deviation (scan points
to the result, in voxels), watertightness, genus against the truth's genus. The scan is never
modified and the result is in the scan's frame. Prints one row per case, then per class and
overall summaries (markdown).

Run: .venv/backend/bin/python bench/complete.py [--resolution 64] [--only NAME ...] [--setups persp ortho]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.assets.mesh import make_mesh  # noqa: E402
from backend.complete.direction import estimate_direction  # noqa: E402
from backend.complete.front import scan_from_point_map  # noqa: E402
from backend.complete.geometric import complete_geometric  # noqa: E402
from backend.complete.metrics import chamfer_fscore, point_to_mesh_distance, sample_surface, topology  # noqa: E402
from backend.complete.scan import load_scan  # noqa: E402
from backend.complete.types import Scan  # noqa: E402
from bench.complete_shapes import Shape, family, jitter_rotation, random_rotation  # noqa: E402
from bench.depth_scan import scan_camera, simulate_point_map  # noqa: E402
from bench.extrude import extrude_front  # noqa: E402
from bench.point_scan import orthographic_scan  # noqa: E402

SETUPS = ("persp", "ortho", "ortho-noisy")
SCAN_DIRECTION = np.array([0.0, 0.0, -1.0])  # every scanner looks down -z; the shapes are posed
SAMPLES = 20_000


@dataclass
class Scores:
    chamfer: float
    fscore: float
    dev_max: float  # voxels
    watertight: bool
    genus: int
    seconds: float


def make_scan(shape: Shape, setup: str, seed: int, tmp: Path) -> tuple[Scan, trimesh.Trimesh]:
    """The scan (read back the way a user's file is) and the posed truth."""
    rng = np.random.default_rng(seed)
    if setup == "persp":
        truth = shape.posed(random_rotation(rng))
        cam = scan_camera(SCAN_DIRECTION, distance=2.5, vfov_deg=35.0, size=192)
        pmap = simulate_point_map(make_mesh(truth.vertices, truth.faces), cam, noise=0.0015, seed=seed)
        return scan_from_point_map(pmap, None, shape.name, shape.name), truth
    if setup == "ortho":
        truth = shape.posed(jitter_rotation(rng, 6.0))
        ps = orthographic_scan(truth, SCAN_DIRECTION, pixels=160, seed=seed)
    else:
        rng.random()  # a different orientation from persp's
        truth = shape.posed(random_rotation(rng))
        ps = orthographic_scan(truth, SCAN_DIRECTION, pixels=160, noise=0.002, normal_noise=0.05, dropouts=3,
                               seed=seed)
    path = tmp / f"{seed}.ply"
    _write_ply_with_normals(path, ps.points, ps.normals)
    return load_scan(path), truth


def _write_ply_with_normals(path: Path, points: np.ndarray, normals: np.ndarray) -> None:
    from plyfile import PlyData, PlyElement

    data = np.empty(len(points), dtype=[(a, "f4") for a in ("x", "y", "z", "nx", "ny", "nz")])
    for k, a in enumerate("xyz"):
        data[a] = points[:, k]
        data["n" + a] = normals[:, k]
    PlyData([PlyElement.describe(data, "vertex")], text=False).write(str(path))


def score(result, truth: trimesh.Trimesh, scan: Scan, seconds: float) -> Scores:
    diag = float(np.linalg.norm(truth.bounds[1] - truth.bounds[0]))
    gt_pts = sample_surface(np.asarray(truth.vertices), np.asarray(truth.faces), SAMPLES, seed=1)
    pr_pts = sample_surface(result.vertices, result.faces, SAMPLES, seed=2)
    chamfer, fscore = chamfer_fscore(pr_pts, gt_pts, 0.01 * diag)
    dev = point_to_mesh_distance(scan.points, result.vertices, result.faces)
    mesh = trimesh.Trimesh(result.vertices, result.faces, process=False)
    return Scores(chamfer, fscore, float(dev.max() / result.voxel), bool(mesh.is_watertight),
                  topology(result.vertices, result.faces)["genus"], seconds)


def run_case(shape: Shape, setup: str, seed: int, resolution: int, tmp: Path) -> tuple[Scores, Scores]:
    scan, truth = make_scan(shape, setup, seed, tmp)
    d, normals = estimate_direction(scan)
    t0 = time.perf_counter()
    ours = complete_geometric(scan.points, normals, d.vector, scan.viewpoint, resolution)
    t1 = time.perf_counter()
    base = extrude_front(scan.points, normals, d.vector, scan.viewpoint, resolution)
    t2 = time.perf_counter()
    return score(ours, truth, scan, t1 - t0), score(base, truth, scan, t2 - t1)


def summarize(label: str, rows: list) -> str:
    ours = [r[3] for r in rows]
    base = [r[4] for r in rows]
    wins = sum(o.chamfer < b.chamfer for o, b in zip(ours, base))
    genus_ok = sum(o.genus == r[2].genus for o, r in zip(ours, rows))
    genus_ok_b = sum(b.genus == r[2].genus for b, r in zip(base, rows))
    return (f"| {label} | {len(rows)} | {wins}/{len(rows)} | {np.mean([o.chamfer for o in ours]):.4f} / "
            f"{np.mean([b.chamfer for b in base]):.4f} | {np.mean([o.fscore for o in ours]):.3f} / "
            f"{np.mean([b.fscore for b in base]):.3f} | {max(o.dev_max for o in ours):.2f} / "
            f"{max(b.dev_max for b in base):.2f} | {sum(o.watertight for o in ours)} / {sum(b.watertight for b in base)} | "
            f"{genus_ok} / {genus_ok_b} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolution", type=int, default=64, help="voxels across the front (default 64)")
    parser.add_argument("--only", nargs="*", help="shape names (substrings) to run")
    parser.add_argument("--setups", nargs="*", default=list(SETUPS), choices=SETUPS)
    args = parser.parse_args()
    # seeds follow a shape's place in the whole family, so a subset runs the same cases as the full run
    shapes = [(k, s) for k, s in enumerate(family()) if not args.only or any(o in s.name for o in args.only)]
    rows = []
    start = time.perf_counter()
    print("| shape | class | setup | truth genus | Chamfer-L1 ours / extrude | F@1% ours / extrude | "
          "front dev max (voxel) ours / extrude | watertight ours / extrude | genus ours / extrude | time (s) ours / extrude |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for k, shape in shapes:
            for j, setup in enumerate(args.setups):
                seed = 1000 * k + SETUPS.index(setup)
                o, b = run_case(shape, setup, seed, args.resolution, Path(tmp))
                rows.append((shape.name, setup, shape, o, b))
                mark = "" if o.chamfer < b.chamfer else " **(loses)**"
                print(f"| {shape.name} | {shape.kind} | {setup} | {shape.genus} | {o.chamfer:.4f} / {b.chamfer:.4f}{mark} | "
                      f"{o.fscore:.3f} / {b.fscore:.3f} | {o.dev_max:.2f} / {b.dev_max:.2f} | {o.watertight} / "
                      f"{b.watertight} | {o.genus} / {b.genus} | {o.seconds:.1f} / {b.seconds:.1f} |", flush=True)
    total = time.perf_counter() - start
    print("\n| class | cases | ours better (Chamfer) | mean Chamfer-L1 ours / extrude | mean F@1% ours / extrude | "
          "max front dev (voxel) ours / extrude | watertight ours / extrude | genus right ours / extrude |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("smooth", "cad", "pair"):
        sel = [r for r in rows if r[2].kind == kind]
        if sel:
            print(summarize(kind, sel))
    for setup in args.setups:
        sel = [r for r in rows if r[1] == setup]
        if sel:
            print(summarize(f"setup {setup}", sel))
    print(summarize("all", rows))
    t_ours = sum(r[3].seconds for r in rows)
    t_base = sum(r[4].seconds for r in rows)
    print(f"\n{len(rows)} cases at resolution {args.resolution} in {total:.0f} s; completion {t_ours:.0f} s "
          f"({len(rows) / max(t_ours, 1e-9):.2f} cases/s), extrusion {t_base:.0f} s: completion / extrusion time "
          f"{t_ours / max(t_base, 1e-9):.2f}x")


if __name__ == "__main__":
    main()
