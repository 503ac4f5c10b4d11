"""complete: close the back of a scanned front (mesh, PLY points or .npy/.exr point map), keeping the front.

Consistent3DGen: front extraction (Alg. 1), thin SDF band, then either the weight-free geometric
completion (default) or a 3D latent model (Direct3D-S2, TRELLIS) guided towards the front latent.
With --scene the scan is split into objects (ground plane removed, then clustered), each completed
in the scan's frame. Writes OUT/<object>.glb and .ply per object and OUT/report.json.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError
from ..progress import Progress, sub_progress
from . import output_paths

NAME = "complete"
INPUTS = {"scan": "scanned front: a mesh (GLB/glTF/OBJ/PLY/STL/OFF), a PLY point cloud, or an H x W x 3 point map (.npy, .exr) with optional confidence"}
OPTIONAL_INPUTS: dict[str, str] = {}
ENGINES = ("geometric", "direct3d-s2", "trellis")


@dataclass
class Params:
    direction: str | None = None  # "X,Y,Z": the way the scanner looked, when known
    engine: Literal["geometric", "direct3d-s2", "trellis"] = "geometric"
    scene: bool = False  # split the scan into objects (ground plane removed, then clustered)
    resolution: int = 128  # voxels across the front's larger side
    symmetry: bool = True  # mirror by a detected symmetry plane when it has strong support
    guidance: float = 20.0  # lambda of the front guidance (model engines)
    steps: int = 25  # flow steps (model engines)
    seed: int = 0
    max_points: int = 1_000_000  # larger scans are thinned, with a note in the report
    confidence_threshold: float = 0.0  # point-map pixels at or below it are invalid

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"engine {self.engine!r}: use one of {', '.join(ENGINES)}")
        if not 16 <= self.resolution <= 512:
            raise InputError("resolution must be between 16 and 512")
        if self.max_points < 1000:
            raise InputError("max_points must be at least 1000")
        if self.guidance < 0 or self.steps < 1:
            raise InputError("guidance must be >= 0 and steps >= 1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scan", help=INPUTS["scan"])
    parser.add_argument("--out", required=True, help="output folder (or OUT.glb / OUT.ply for one object)")
    parser.add_argument("--direction", help="X,Y,Z: the way the scanner looked (estimated when omitted)")
    parser.add_argument("--engine", choices=ENGINES, help="geometric (default, no weights), direct3d-s2 or trellis")
    parser.add_argument("--scene", action="store_true", default=None, help="split a multi-object scan and complete each object")
    parser.add_argument("--resolution", type=int, help="voxels across the front (default 128)")
    parser.add_argument("--no-symmetry", dest="symmetry", action="store_false", default=None,
                        help="never mirror by a detected symmetry plane")
    parser.add_argument("--guidance", type=float, help="front guidance strength lambda (model engines)")
    parser.add_argument("--steps", type=int, help="flow steps (model engines)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-points", dest="max_points", type=int, help="thin larger scans (default 1e6)")
    parser.add_argument("--confidence-threshold", dest="confidence_threshold", type=float)


def _outputs(out: Path, names: list[str]) -> tuple[dict[str, Path], Path]:
    """Per-object result base paths (no suffix) and the report path (CLI --out convention)."""
    main, side = output_paths(out, (".glb", ".ply"), "")  # a folder: main == side == out
    side.mkdir(parents=True, exist_ok=True)
    main.parent.mkdir(parents=True, exist_ok=True)
    bases = {n: (main.with_suffix("") if i == 0 and main != side else side / n) for i, n in enumerate(names)}
    return bases, side / "report.json"


def run(inputs: dict[str, Path], params: Params, out_dir: Path, progress: Progress) -> dict[str, Path]:
    import numpy as np
    import trimesh

    from ..complete.direction import estimate_direction, parse_direction
    from ..complete.report import object_report
    from ..complete.scan import load_scan

    scan_path = Path(inputs["scan"])
    progress(0.0, "loading scan")
    scan = load_scan(scan_path, params.max_points, params.confidence_threshold)
    given = parse_direction(params.direction) if params.direction else None
    direction, normals = estimate_direction(scan, given)
    progress(0.05, "scan direction")
    ground = None
    if params.scene:
        from ..complete.scene import split_scene

        split = split_scene(scan.points)
        ground = split.ground
        parts = [(f"{scan.name}_object{i + 1}", index, split.notes) for i, index in enumerate(split.objects)]
    else:
        parts = [(scan.name, np.arange(scan.num_points), ())]
    prior = None
    if params.engine != "geometric":
        from ..complete.latent_priors import load_prior

        prior = load_prior(params.engine)  # MissingWeightsError names what to install
    bases, report_path = _outputs(Path(out_dir), [p[0] for p in parts])
    results: dict[str, Path] = {}
    reports = []
    for k, (name, index, split_notes) in enumerate(parts):
        part_progress = sub_progress(progress, 0.1 + 0.85 * k / len(parts), 0.1 + 0.85 * (k + 1) / len(parts))
        points, part_normals = scan.points[index], normals[index]
        if len(points) < 4:
            raise InputError(f"{scan_path.name}: object {name} has too few points to complete")
        if prior is None:
            from ..complete.geometric import complete_geometric

            completion = complete_geometric(points, part_normals, direction.vector, scan.viewpoint,
                                            params.resolution, params.symmetry, ground=ground, name=name,
                                            progress=part_progress)
        else:
            from ..complete.guided import complete_guided

            completion = complete_guided(points, part_normals, direction.vector, prior, scan.viewpoint,
                                         params.guidance, params.steps, params.seed, params.resolution,
                                         ground=ground, name=name, progress=part_progress)
        mesh = trimesh.Trimesh(completion.vertices, completion.faces, process=False)
        base = bases[name]
        for suffix in (".glb", ".ply"):
            path = base.with_suffix(suffix)
            if path.resolve() == scan_path.resolve():
                raise InputError(f"{path}: refusing to overwrite the scan")
            mesh.export(path)
            results[f"{name}{suffix}"] = path
        reports.append(object_report(name, completion, points, {
            "engine": params.engine, "direction": direction.vector.tolist(), "direction_source": direction.source,
            "scanner_position": None if scan.viewpoint is None else scan.viewpoint.tolist(),
            "scene_notes": list(split_notes)}))
    report = {"scan": scan_path.name, "params": asdict(params), "scan_notes": list(scan.notes), "objects": reports}
    report_path.write_text(json.dumps(report, indent=2))
    results["report"] = report_path
    progress(1.0, "done")
    return results
