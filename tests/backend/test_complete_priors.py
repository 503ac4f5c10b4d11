"""Back-completion priors for scans from other scanners: planar faces and their thickness, dropouts
filled but through-holes kept, the scan direction of oriented point sets (bench/point_scan.py, an
orthographic structured-light style simulator, not the project's own perspective one)."""
from __future__ import annotations

import numpy as np
import trimesh

from backend.complete.direction import estimate_direction
from backend.complete.front_map import build_front_map
from backend.complete.geometric import complete_geometric, make_view
from backend.complete.metrics import chamfer_fscore, point_to_mesh_distance, sample_surface, topology
from backend.complete.planes import find_planar_faces
from backend.complete.types import Scan
from bench.point_scan import orthographic_scan

rot = trimesh.transformations.rotation_matrix
DOWN = np.array([0.0, 0.0, -1.0])


def _scan(mesh: trimesh.Trimesh, **kw) -> tuple[Scan, np.ndarray, np.ndarray]:
    ps = orthographic_scan(mesh, DOWN, pixels=120, **kw)
    scan = Scan("s", ps.points, ps.normals, None, True)
    d, normals = estimate_direction(scan)
    return scan, d.vector, normals


def _chamfer(result, truth: trimesh.Trimesh) -> float:
    gt = sample_surface(np.asarray(truth.vertices), np.asarray(truth.faces), 20000, seed=1)
    diag = float(np.linalg.norm(np.ptp(truth.vertices, axis=0)))
    return chamfer_fscore(sample_surface(result.vertices, result.faces, 20000), gt, 0.01 * diag)[0]


def test_planar_faces_of_a_box_seen_across_a_corner_measure_its_sides():
    box = trimesh.creation.box([0.8, 0.5, 0.3])
    box.apply_transform(rot(0.5, [1, 0, 0]) @ rot(0.6, [0, 1, 0]))
    scan, _, normals = _scan(box)
    d = DOWN  # given (--direction): from normals alone a box's view is ambiguous within its faces' cone
    fmap = build_front_map(scan.points, normals, make_view(scan.points, d, None), 48)
    faces = find_planar_faces(scan.points, normals, fmap)
    assert len(faces) == 3 and all(f.measured for f in faces)
    # each face's thickness is the box's extent along its normal, read off the other faces
    extents = np.abs(np.asarray(box.vertices) @ np.stack([f.normal for f in faces]).T).max(axis=0) * 2
    assert np.allclose([f.thickness for f in faces], extents, rtol=0.08)
    planar = complete_geometric(scan.points, normals, d, None, 48)
    smooth = complete_geometric(scan.points, normals, d, None, 48, planar=False)
    assert _chamfer(planar, box) < 0.9 * _chamfer(smooth, box)  # 0.0144 vs 0.0177 here
    assert point_to_mesh_distance(scan.points, planar.vertices, planar.faces).max() <= planar.voxel
    assert topology(planar.vertices, planar.faces)["genus"] == 0


def test_a_sphere_cap_is_not_a_planar_face():
    sphere = trimesh.creation.icosphere(4, radius=0.3)
    scan, d, normals = _scan(sphere)
    fmap = build_front_map(scan.points, normals, make_view(scan.points, d, None), 48)
    assert find_planar_faces(scan.points, normals, fmap) == []


def test_step_seen_head_on_takes_its_depth_as_thickness():
    """Two stacked blocks seen from above, no wall visible: the top face's part reaches back at
    least to the lower face beside it, and the lower face takes that thickness."""
    tower = trimesh.boolean.union([trimesh.creation.box([0.6, 0.6, 0.3]),
                                   trimesh.creation.box([0.3, 0.3, 0.3]).apply_translation([0, 0, 0.3])],
                                  engine="manifold")
    scan, d, normals = _scan(tower)
    fmap = build_front_map(scan.points, normals, make_view(scan.points, d, None), 48)
    faces = find_planar_faces(scan.points, normals, fmap)
    assert len(faces) == 2 and abs(faces[0].thickness - 0.3) < 0.03 and abs(faces[1].thickness - 0.3) < 0.03


def test_dropouts_are_filled_and_through_holes_kept():
    washer = trimesh.creation.annulus(0.2, 0.45, 0.1, sections=64)
    washer.apply_transform(rot(0.5, [1, 0.3, 0]))
    scan, d, normals = _scan(washer, dropouts=3, dropout_radius=0.04, seed=3)
    result = complete_geometric(scan.points, normals, d, None, 48)
    assert topology(result.vertices, result.faces)["genus"] == 1  # the hole stays open, the dropouts close
    assert trimesh.Trimesh(result.vertices, result.faces, process=False).is_watertight


def test_scan_direction_of_an_oriented_point_set_seen_obliquely():
    """The mean normal of an elongated object seen obliquely leans towards its broad side (30
    degrees here before); the direction the normals face most evenly does not."""
    ell = trimesh.creation.icosphere(4)
    ell.apply_scale([0.5, 0.2, 0.42])
    ell.apply_transform(rot(1.0, [0.3, 1, 0.2]))
    _, d, _ = _scan(ell, noise=0.002, normal_noise=0.05)
    assert np.degrees(np.arccos(d @ DOWN)) < 4.0


def test_scan_direction_of_a_flat_face_seen_head_on():
    """A cylinder's end face seen almost head-on, a rim of side wall beside it: the normals'
    smallest cap leans 45 degrees towards the wall; the points' even spread in the image does not."""
    cyl = trimesh.creation.cylinder(radius=0.3, height=0.8, sections=64)
    cyl.apply_transform(rot(np.radians(5.5), [1, 0.4, 0]))
    _, d, _ = _scan(cyl)
    assert np.degrees(np.arccos(d @ DOWN)) < 3.0


def test_a_mirror_plane_is_used_only_on_the_pieces_it_maps_onto_themselves_or_that_support_it():
    from backend.complete.symmetry import SymmetryPlane, supported_pieces

    parts = []
    for x in (-0.24, 0.24):  # two cylinders apart, seen from the side (their axes along y)
        c = trimesh.creation.cylinder(radius=0.14, height=0.7, sections=48)
        c.apply_transform(rot(np.pi / 2, [1, 0, 0]))
        c.apply_translation([x, 0.0, 0.0])
        parts.append(c)
    scan, d, normals = _scan(trimesh.util.concatenate(parts))
    fmap = build_front_map(scan.points, normals, make_view(scan.points, d, None), 48)
    left = scan.points[:, 0] < 0
    # through the left cylinder's axis at 45 degrees: a true symmetry of it, none of the right one,
    # whose mirror image would land deep behind the left one
    n = np.array([1.0, 0.0, 1.0]) / np.sqrt(2.0)
    tilted = SymmetryPlane(n, float(n @ [-0.24, 0.0, 0.0]), 0.3, 0.0, 0.3)
    keep = supported_pieces(scan.points, normals, fmap, tilted)
    assert keep[left].mean() > 0.95 and keep[~left].mean() < 0.05
    between = SymmetryPlane(np.array([1.0, 0.0, 0.0]), 0.0, 0.5, 0.0, 0.3)  # maps each onto the other
    assert supported_pieces(scan.points, normals, fmap, between).all()


def test_scan_direction_of_a_cone_seen_from_its_side():
    """A cone seen from its side, tilted: its normals fill no cap around the scanner (none grazes
    on the far side), so the normals' mean and smallest cap were 8 degrees off here (30 on the
    bench's cone); the points' surface density (rho n . -d for a scanner sampling its image
    evenly) tells the direction."""
    cone = trimesh.creation.cone(radius=0.35, height=0.8, sections=64)
    cone.apply_translation([0.0, 0.0, -0.4])
    cone.apply_transform(rot(np.radians(50.0), [1, 0.3, 0]))
    _, d, _ = _scan(cone, noise=0.002, normal_noise=0.05, seed=3)
    assert np.degrees(np.arccos(d @ DOWN)) < 4.0
