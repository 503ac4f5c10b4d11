"""Back completion benchmark: weight-free completion vs the naive extrude baseline.

Five ground-truth shapes (convex, concave, thin, symmetric, and an asymmetric blob that must not
be mirrored), each scanned from one view (depth render with the project's rasterizer + noise),
completed, and compared with the full shape: Chamfer-L1 and F-score at 1 % of the bounding-box
diagonal, front deviation (scan points to the result, in voxels), watertightness, self-
intersections, the symmetry plane the report names, topology (Euler characteristic and genus:
every shape but the torus is genus 0, the torus genus 1) and back smoothness (the angle between
the result's normal and the truth's at the nearest true point, over the result's surface farther
than 3 voxels from every scan point: lumps and spikes raise it). Run: .venv/backend/bin/python bench/complete.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.assets.mesh import make_mesh, normalize  # noqa: E402
from bench.extrude import extrude_front  # noqa: E402
from backend.complete.direction import estimate_direction  # noqa: E402
from backend.complete.front import scan_from_point_map  # noqa: E402
from backend.complete.geometric import complete_geometric  # noqa: E402
from backend.complete.metrics import (back_normal_error, chamfer_fscore, mesh_summary,  # noqa: E402
                                      point_to_mesh_distance, sample_surface, self_intersections, topology)
from backend.complete.report import object_report  # noqa: E402
from bench.depth_scan import asymmetric_blob, scan_camera, simulate_point_map  # noqa: E402

RESOLUTION = 128
NOISE = 0.0015  # depth noise std, in units of the normalized shape (largest side 1)
SAMPLES = 40_000


def shapes() -> dict[str, tuple[trimesh.Trimesh, np.ndarray]]:
    """name -> (ground-truth mesh, scan direction)."""
    rot = trimesh.transformations.rotation_matrix
    convex = trimesh.creation.icosphere(5)
    convex.apply_scale([0.5, 0.35, 0.3])
    convex.apply_transform(rot(0.5, [0, 1, 0]) @ rot(0.3, [1, 0, 0]))
    concave = trimesh.creation.torus(major_radius=0.35, minor_radius=0.13, major_sections=96, minor_sections=48)
    concave.apply_transform(rot(np.pi / 2, [1, 0, 0]))  # ring standing up, hole along z
    thin = trimesh.creation.cylinder(radius=0.45, height=0.04, sections=96)
    thin.apply_transform(rot(0.9, [1, 0, 0]) @ rot(0.3, [0, 1, 0]))
    profile = np.array([[0.0, -0.5], [0.22, -0.5], [0.3, -0.35], [0.33, -0.1], [0.26, 0.15], [0.14, 0.3],
                        [0.12, 0.42], [0.17, 0.5], [0.0, 0.5]])
    symmetric = trimesh.creation.revolve(profile, sections=96)
    symmetric.apply_transform(rot(-np.pi / 2, [1, 0, 0]))  # axis along +y (up)
    blob = asymmetric_blob()
    asymmetric = trimesh.Trimesh(blob.positions, blob.faces, process=False)
    return {
        "convex (ellipsoid)": (convex, np.array([-0.3, -0.25, -1.0])),
        "concave (torus)": (concave, np.array([-0.6, -0.5, -1.0])),
        "thin (disc 4 %)": (thin, np.array([0.2, -0.3, -1.0])),
        "symmetric (vase)": (symmetric, np.array([-1.0, -0.35, -0.4])),
        "asymmetric (blob)": (asymmetric, np.array([0.3, -0.2, -1.0])),
    }


def evaluate(name: str, gt: trimesh.Trimesh, result, scan_points: np.ndarray, diag: float) -> dict:
    gt_pts = sample_surface(np.asarray(gt.vertices), np.asarray(gt.faces), SAMPLES, seed=1)
    pr_pts = sample_surface(result.vertices, result.faces, SAMPLES, seed=2)
    chamfer, fscore = chamfer_fscore(pr_pts, gt_pts, 0.01 * diag)
    dev = point_to_mesh_distance(scan_points, result.vertices, result.faces)
    summary = mesh_summary(result.vertices, result.faces)
    back = back_normal_error(result.vertices, result.faces, np.asarray(gt.vertices), np.asarray(gt.faces),
                             scan_points, 3.0 * result.voxel)
    return {"chamfer": chamfer, "fscore": fscore, "dev_max": dev.max() / result.voxel,
            "dev_mean": dev.mean() / result.voxel, "watertight": summary["watertight"],
            "crossings": self_intersections(result.vertices, result.faces),
            **topology(result.vertices, result.faces), "back_deg": float(back.mean())}


def main() -> None:
    rows = []
    for name, (tm, direction) in shapes().items():
        mesh, _ = normalize(make_mesh(tm.vertices, tm.faces))
        gt = trimesh.Trimesh(mesh.positions, mesh.faces, process=False)
        diag = float(np.linalg.norm(gt.bounds[1] - gt.bounds[0]))
        cam = scan_camera(direction, distance=2.5, vfov_deg=35.0, size=256)
        pmap = simulate_point_map(mesh, cam, noise=NOISE, seed=0)
        scan = scan_from_point_map(pmap, None, name, name)
        d, normals = estimate_direction(scan)
        t0 = time.perf_counter()
        ours = complete_geometric(scan.points, normals, d.vector, scan.viewpoint, RESOLUTION)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        base = extrude_front(scan.points, normals, d.vector, scan.viewpoint, RESOLUTION)
        t_base = time.perf_counter() - t0
        r_ours = evaluate(name, gt, ours, scan.points, diag)
        r_base = evaluate(name, gt, base, scan.points, diag)
        angle = np.degrees(np.arccos(np.clip(d.vector @ (direction / np.linalg.norm(direction)), -1, 1)))
        plane = object_report(name, ours, scan.points, {})["symmetry_plane"]
        rows.append((name, scan.num_points, angle, r_ours, r_base, t_ours, t_base, plane))
        print(f"{name}: {scan.num_points} scan points, direction error {angle:.2f} deg, report symmetry_plane "
              f"{'null' if plane is None else np.round(plane['normal'], 3).tolist()}", flush=True)
        for label, r, t in (("completion", r_ours, t_ours), ("extrude", r_base, t_base)):
            print(f"  {label:10s} Chamfer-L1 {r['chamfer']:.4f}  F@1% {r['fscore']:.3f}  front dev max "
                  f"{r['dev_max']:.2f} / mean {r['dev_mean']:.3f} voxel  watertight {r['watertight']}  "
                  f"self-intersections {r['crossings']}  Euler {r['euler']} genus {r['genus']} ({r['pieces']} pieces)  "
                  f"back normal error {r['back_deg']:.1f} deg  {t:.1f} s", flush=True)
        print(f"  Chamfer ratio extrude / completion: {r_base['chamfer'] / r_ours['chamfer']:.2f}x", flush=True)
    print("\n| shape | scan points | method | Chamfer-L1 | F@1% | front dev max / mean (voxel) | watertight | "
          "self-intersections | Euler / genus (pieces) | back normal error (deg) | symmetry plane | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, n, _, r_ours, r_base, t_ours, t_base, plane in rows:
        for label, r, t in (("completion", r_ours, t_ours), ("extrude", r_base, t_base)):
            sym = "—" if label == "extrude" else ("null" if plane is None else "used")
            print(f"| {name} | {n} | {label} | {r['chamfer']:.4f} | {r['fscore']:.3f} | "
                  f"{r['dev_max']:.2f} / {r['dev_mean']:.3f} | {r['watertight']} | {r['crossings']} | "
                  f"{r['euler']} / {r['genus']} ({r['pieces']}) | {r['back_deg']:.1f} | {sym} | {t:.1f} |")
    better = all(r_o["chamfer"] < r_b["chamfer"] for _, _, _, r_o, r_b, *_ in rows)
    front_ok = all(r_o["dev_max"] <= 1.0 for _, _, _, r_o, *_ in rows)
    no_false_plane = all(plane is None for name, *_, plane in rows if name.startswith("asymmetric"))
    genus_ok = [name for name, _, _, r_o, *_ in rows if r_o["genus"] != (1 if name.startswith("concave") else 0)]
    print(f"\nbetter Chamfer than extrude on every shape: {better}; front deviation <= 1 voxel on every shape: "
          f"{front_ok}; no symmetry plane on the asymmetric shape: {no_false_plane}; "
          f"genus of the object: {'every shape' if not genus_ok else 'not on ' + ', '.join(genus_ok)}")


if __name__ == "__main__":
    main()
