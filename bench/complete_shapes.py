"""The back-completion benchmark's shape family (bench only): 24 closed ground-truth meshes in three
classes, each normalized (bounding box centred, largest side 1), with a "head-on" pose that turns
its characteristic face (a plate's face, a ring's or tube's axis, a box face) towards a scanner
looking down -z, and its true genus.

- smooth: ellipsoids, lumpy blobs, capsules;
- cad: boxes, thin plates, a plate with a through-hole, rings (washers) and a tube, cylinders seen
  along and across the axis, cones, L-brackets;
- pair: two objects touching (one solid, boolean union) and apart (two solids).
Booleans go through trimesh's manifold3d engine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from backend.complete.metrics import topology

rot = trimesh.transformations.rotation_matrix


@dataclass(frozen=True)
class Shape:
    name: str
    kind: str  # "smooth", "cad" or "pair"
    mesh: trimesh.Trimesh  # normalized, head-on pose
    genus: int

    def posed(self, rotation: np.ndarray) -> trimesh.Trimesh:
        m = self.mesh.copy()
        m.apply_transform(rotation)
        return m


def lumpy_blob(seed: int, subdivisions: int = 4) -> trimesh.Trimesh:
    """A closed blob without mirror symmetry: a stretched sphere with random low-frequency waves and bumps."""
    rng = np.random.default_rng(seed)
    s = trimesh.creation.icosphere(subdivisions)
    v = np.asarray(s.vertices, dtype=np.float64)
    k = rng.normal(size=(2, 3)) * 2.0
    r = 0.42 + 0.05 * np.sin(v @ k[0] + rng.uniform(0, 6)) + 0.04 * np.cos(v @ k[1] + rng.uniform(0, 6))
    for _ in range(3):
        c = rng.normal(size=3)
        c /= np.linalg.norm(c)
        r = r + rng.uniform(0.08, 0.16) * np.exp(-np.sum((v - c) ** 2, axis=1) / rng.uniform(0.3, 0.4) ** 2)
    return trimesh.Trimesh(v * r[:, None] * rng.uniform(0.75, 1.2, size=3), s.faces, process=False)


def _box(size, at=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    b = trimesh.creation.box(size)
    b.apply_translation(at)
    return b


def _union(*parts: trimesh.Trimesh) -> trimesh.Trimesh:
    return trimesh.boolean.union(list(parts), engine="manifold")


def _l_bracket(length: float, width: float, height: float, wall: float) -> trimesh.Trimesh:
    base = _box([length, width, wall], [0.0, 0.0, wall / 2])
    upright = _box([wall, width, height], [-length / 2 + wall / 2, 0.0, height / 2])
    return _union(base, upright)


def _across(m: trimesh.Trimesh) -> trimesh.Trimesh:
    """Axis (z) turned along x: head-on, the scanner sees it from the side."""
    m.apply_transform(rot(np.pi / 2, [0, 1, 0]))
    return m


def _normalized(m: trimesh.Trimesh) -> trimesh.Trimesh:
    m = m.copy()
    lo, hi = m.bounds
    m.apply_translation(-(lo + hi) / 2)
    m.apply_scale(1.0 / float((hi - lo).max()))
    return m


def family() -> list[Shape]:
    ico = trimesh.creation.icosphere
    e1 = ico(4)
    e1.apply_scale([0.5, 0.35, 0.3])
    e2 = ico(4)
    e2.apply_scale([0.5, 0.2, 0.42])
    cyl_across = _across(trimesh.creation.cylinder(radius=0.25, height=0.9, sections=64))
    plate_hole = trimesh.boolean.difference([_box([0.9, 0.6, 0.05]),
                                             trimesh.creation.cylinder(radius=0.13, height=0.2, sections=64)],
                                            engine="manifold")
    sphere_a, sphere_b = ico(4, radius=0.3), ico(4, radius=0.25)
    sphere_a.apply_translation([-0.27, 0, 0])
    sphere_b.apply_translation([0.24, 0.05, 0])
    tower = _union(_box([0.6, 0.6, 0.3], [0, 0, 0.15]), _box([0.3, 0.3, 0.35], [0.08, 0.05, 0.47]))
    apart_s, apart_b = ico(4, radius=0.22), _box([0.35, 0.35, 0.35], [0.4, 0.0, 0.0])
    apart_s.apply_translation([-0.3, 0.0, 0.0])
    cyl_a = trimesh.creation.cylinder(radius=0.14, height=0.7, sections=48)
    cyl_b = cyl_a.copy()
    cyl_a.apply_translation([-0.24, 0, 0])
    cyl_b.apply_translation([0.24, 0, 0])
    cyl_a.apply_transform(rot(np.pi / 2, [1, 0, 0]))
    cyl_b.apply_transform(rot(np.pi / 2, [1, 0, 0]))
    raw = [
        ("ellipsoid", "smooth", e1),
        ("flat ellipsoid", "smooth", e2),
        ("blob A", "smooth", lumpy_blob(1)),
        ("blob B", "smooth", lumpy_blob(2)),
        ("capsule", "smooth", _across(trimesh.creation.capsule(height=0.6, radius=0.2, count=[32, 32]))),
        ("short capsule", "smooth", _across(trimesh.creation.capsule(height=0.25, radius=0.22, count=[32, 32]))),
        ("box", "cad", _box([0.6, 0.5, 0.4])),
        ("long box", "cad", _box([0.9, 0.3, 0.25])),
        ("thin plate", "cad", _box([0.9, 0.6, 0.04])),
        ("disc", "cad", trimesh.creation.cylinder(radius=0.45, height=0.05, sections=64)),
        ("plate with hole", "cad", plate_hole),
        ("ring", "cad", trimesh.creation.annulus(0.28, 0.5, 0.15, sections=64)),
        ("thick ring", "cad", trimesh.creation.annulus(0.18, 0.45, 0.3, sections=64)),
        ("tube", "cad", trimesh.creation.annulus(0.2, 0.28, 0.9, sections=64)),
        ("cylinder along axis", "cad", trimesh.creation.cylinder(radius=0.3, height=0.8, sections=64)),
        ("cylinder across axis", "cad", cyl_across),
        ("cone", "cad", trimesh.creation.cone(radius=0.35, height=0.8, sections=64)),
        ("flat cone", "cad", trimesh.creation.cone(radius=0.45, height=0.4, sections=64)),
        ("L-bracket", "cad", _l_bracket(0.8, 0.5, 0.6, 0.1)),
        ("tall L-bracket", "cad", _l_bracket(0.5, 0.4, 0.9, 0.12)),
        ("spheres touching", "pair", _union(sphere_a, sphere_b)),
        ("boxes stacked", "pair", tower),
        ("sphere and box apart", "pair", trimesh.util.concatenate([apart_s, apart_b])),
        ("cylinders apart", "pair", trimesh.util.concatenate([cyl_a, cyl_b])),
    ]
    shapes = []
    for name, kind, mesh in raw:
        m = _normalized(mesh)
        shapes.append(Shape(name, kind, m, topology(np.asarray(m.vertices), np.asarray(m.faces))["genus"]))
    return shapes


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation (4x4)."""
    return trimesh.transformations.random_rotation_matrix(rng.random(3))


def jitter_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A small rotation about a random axis, at most `max_deg`: a scanner set up by hand "head-on"."""
    axis = rng.normal(size=3)
    return rot(np.radians(rng.uniform(0.0, max_deg)), axis / np.linalg.norm(axis))
