"""Weight-free back completion: a closed surface behind the scanned front.

What the scan tells for sure: space in front of the front is empty (the scanner saw through it)
and the object lies inside the silhouette cone seen from the scanner. Inside that region each
scanner ray enters the object at the front depth z_f and leaves at a back depth z_b to infer:

- rim reflection: where the surface turns away from the scanner (the silhouette rim and the near
  side of depth jumps) front and back meet; a membrane (Laplace) interpolation of the rim depth
  gives a mid-surface, and the back mirrors the front through it: z_b = 2 z_rim - z_f. Exact for
  spheres and ellipsoids seen orthographically, thin for plates, and never thinner than `min_thickness`;
- planar faces (planes.py): the back of a flat face is taken flat and parallel, one thickness
  behind it, the thickness read off the walls beside it (RANSAC planes; a prior faded in over
  the faces, the other priors elsewhere); a cure for flat faces seen head-on, where rim and
  curvature say nothing and gave a skin of minimum thickness;
- symmetry: when a mirror plane has strong support (symmetry.py), the mirrored front gives back
  depths directly; a screened membrane blends them into the rim-reflection back;
- near the silhouette the back may not rise inwards (`recede_from_rim`): a furrow there made
  marching cubes bridge it along the side seam (handles in a genus-0 object);
- the solid {z_f <= w <= z_b, inside the silhouette (, above the ground)} becomes an SDF-like
  field, and marching cubes gives a watertight mesh whose front lies on the scan. The field has
  to be a distance near the front for that: its front term also measures sideways on the scan
  points (free_space.py), and its back term keeps the layers of a depth jump apart
  (`layered_back_term`); with the plain ray terms marching cubes cut occluding edges by more
  than a voxel. Front vertices are finally snapped onto the scan (`snap_front`; scan points still
  over 0.9 voxel off, at tips and knife edges, pull their nearest vertex onto themselves), each
  move undone where it would make triangles cross;
- handles: the field's empty space is regrown from what the scanner saw empty without closing a
  loop through hidden space (loops.py), so the result has the through-holes the scanner saw
  through and no others (slits bridged along the side seams and between occluding layers made
  genus-0 objects come out with up to 12 handles).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..progress import Progress, no_progress
from .free_space import FreeSpace
from .front_map import ViewFrame, build_front_map, node_positions, obliquity, silhouette_width, smooth_inside
from .planes import find_planar_faces, planar_back
from .surface import extract_surface, snap_front
from .symmetry import detect_symmetry, supported_pieces
from .thickness import blend_symmetric, curvature_thickness, recede_from_rim, rim_depth
from .types import Completion


def make_view(points: np.ndarray, direction: np.ndarray, viewpoint: np.ndarray | None) -> ViewFrame:
    if viewpoint is not None:
        return ViewFrame.create(direction, viewpoint, perspective=True)
    return ViewFrame.create(direction, points.mean(axis=0), perspective=False)


def complete_geometric(points: np.ndarray, normals: np.ndarray, direction: np.ndarray,
                       viewpoint: np.ndarray | None = None, resolution: int = 128,
                       symmetry: bool = True, min_thickness_voxels: float = 2.5, planar: bool = True,
                       ground: np.ndarray | None = None, name: str = "scan",
                       progress: Progress = no_progress) -> Completion:
    """Complete one object's front. `ground` (4,): plane n.x + c = 0 with n pointing up/out of the
    ground; the result is clipped to n.x + c >= 0."""
    if resolution < 16:
        raise InputError("resolution must be at least 16")
    view = make_view(points, direction, viewpoint)
    fmap = build_front_map(points, normals, view, resolution, name)
    progress(0.25, "front depth map")
    notes: list[str] = []
    if not view.perspective:
        notes.append("no scanner position known: rays are taken parallel to the scan direction")
    z_rim = rim_depth(fmap)
    t_min = min_thickness_voxels * fmap.voxel * obliquity(fmap)  # a thin wedge must still span voxels
    reflected = 2.0 * (z_rim - fmap.depth)
    chord, trust = curvature_thickness(fmap)
    # where the sphere fit is trusted the back may go as deep as its chord; the trust fades
    # smoothly, so the back does not step between the two priors
    thickness = np.maximum(reflected + trust * np.maximum(chord - reflected, 0.0), t_min)
    if planar:
        faces = find_planar_faces(points, normals, fmap)
        back, on_face = planar_back(fmap, faces, points, node_positions(fmap))
        if on_face.any():  # faded in from the face borders, so the back does not step there
            weight = on_face * np.clip(smooth_inside(on_face, fmap.mask, 1.0), 0.0, 1.0)
            # the visible faces do not close the object where a ray runs almost along them: no
            # deeper than the silhouette is wide (a box seen across an edge: rays grazing both faces)
            flat = np.where(on_face > 0, np.minimum(back - fmap.depth, silhouette_width(fmap)), thickness)
            thickness = np.maximum((1.0 - weight) * thickness + weight * flat, t_min)
            notes.append(f"{len(faces)} planar face(s): backs parallel at thickness "
                         + ", ".join("?" if f.thickness is None else f"{f.thickness:.3g}{'' if f.measured else ' (from the others)'}"
                                     for f in faces))
    thickness = smooth_inside(thickness, fmap.mask, sigma=1.0)
    plane = None
    if symmetry:
        plane = detect_symmetry(points, normals, fmap)
        progress(0.5, "symmetry")
        own = None if plane is None else supported_pieces(points, normals, fmap, plane)
        if plane is not None and own.any():
            thickness = blend_symmetric(fmap, thickness, points[own], plane, t_min)
            notes.append(f"mirrored by a symmetry plane (normal {np.round(plane.normal, 3).tolist()}, "
                         f"support {plane.support:.0%}, violations {plane.violation:.1%})")
    back = recede_from_rim(fmap, fmap.depth + thickness)
    progress(0.6, "back surface")
    vertices, faces, dropped = extract_surface(fmap, back, ground, free=FreeSpace(fmap, points))
    if dropped:
        notes.append(f"{dropped} small disconnected piece(s) were removed")
    progress(0.9, "front snap")
    vertices, undone = snap_front(vertices, faces, points, normals, view, fmap.voxel)
    if undone:
        notes.append(f"{undone} front vertices were left off the scan where snapping them would make triangles cross")
    progress(1.0, "surface")
    return Completion(vertices, faces, fmap, back, plane, tuple(notes))
