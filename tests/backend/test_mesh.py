"""Mesh loading (GLB/OBJ/PLY, UVs without materials), normalization, bad files."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from backend.assets.mesh import normalize
from backend.assets.load import load_mesh
from backend.errors import InputError

from geometry_helpers import write_glb_without_material

ROOT = Path(__file__).resolve().parents[2]

QUAD_POSITIONS = np.array([[0, 0, 0], [2, 0, 0], [2, 1, 0], [0, 1, 0.5]], dtype=np.float32)
QUAD_FACES = np.array([[0, 1, 2], [0, 2, 3]])
QUAD_UVS = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32)


def _box_file(tmp_path: Path, suffix: str) -> Path:
    import trimesh

    path = tmp_path / f"box{suffix}"
    trimesh.creation.box(extents=(1, 2, 3)).export(path)
    return path


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_load_formats(tmp_path: Path, suffix: str) -> None:
    mesh = load_mesh(_box_file(tmp_path, suffix))
    assert mesh.num_faces == 12
    assert mesh.positions.dtype == np.float32 and mesh.faces.dtype == np.int32
    np.testing.assert_allclose(mesh.positions.max(0) - mesh.positions.min(0), [1, 2, 3], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1, atol=1e-5)
    assert mesh.surface_area() == pytest.approx(2 * (1 * 2 + 2 * 3 + 1 * 3), rel=1e-5)


def test_glb_without_material_keeps_uvs(tmp_path: Path) -> None:
    path = write_glb_without_material(tmp_path / "white.glb", QUAD_POSITIONS, QUAD_FACES, QUAD_UVS)
    mesh = load_mesh(path)
    assert mesh.uvs is not None
    order = [int(np.argmin(np.linalg.norm(QUAD_POSITIONS - p, axis=1))) for p in mesh.positions]
    expected = QUAD_UVS[order] * [1, -1] + [0, 1]  # glTF's v runs down; Mesh UVs use the OpenGL origin
    np.testing.assert_allclose(mesh.uvs, expected, atol=1e-6)


def test_obj_with_vt_and_no_mtl_keeps_uvs(tmp_path: Path) -> None:
    lines = [f"v {x} {y} {z}" for x, y, z in QUAD_POSITIONS] + [f"vt {u} {v}" for u, v in QUAD_UVS]
    lines += ["f 1/1 2/2 3/3", "f 1/1 3/3 4/4"]
    path = tmp_path / "plain.obj"
    path.write_text("\n".join(lines) + "\n")
    mesh = load_mesh(path)
    assert mesh.uvs is not None and mesh.num_faces == 2
    for p, uv in zip(mesh.positions, mesh.uvs):
        i = int(np.argmin(np.linalg.norm(QUAD_POSITIONS - p, axis=1)))
        np.testing.assert_allclose(uv, QUAD_UVS[i], atol=1e-6)


def test_normalize_round_trip() -> None:
    from backend.assets.mesh import make_mesh

    rng = np.random.default_rng(3)
    positions = rng.normal(size=(50, 3)) * [3, 1, 0.5] + [10, -4, 2]
    mesh = make_mesh(positions, rng.integers(0, 50, size=(80, 3)))
    normalized, norm = normalize(mesh)
    extent = normalized.positions.max(0) - normalized.positions.min(0)
    assert extent.max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose((normalized.positions.max(0) + normalized.positions.min(0)) / 2, 0, atol=1e-6)
    np.testing.assert_allclose(norm.invert(normalized.positions), mesh.positions, atol=1e-5)
    np.testing.assert_allclose(normalized.normals, mesh.normals, atol=1e-6)  # similarity: normals unchanged


@pytest.mark.writes_invalid_gltf  # corrupt and empty GLBs on purpose
def test_bad_files_raise_input_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.glb"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.glb"
    corrupt.write_bytes(b"glTF" + bytes(range(256)) * 4)
    nan = tmp_path / "nan.obj"
    nan.write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n")
    points = tmp_path / "points.obj"
    points.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    for path in (empty, corrupt, nan, points, tmp_path / "missing.ply", tmp_path / "mesh.fbx"):
        before = path.read_bytes() if path.exists() else None
        with pytest.raises(InputError) as info:
            load_mesh(path)
        assert path.name in str(info.value)
        if before is not None:
            assert path.read_bytes() == before  # never modified


def test_sample_vase() -> None:
    path = ROOT / "samples" / "vase.glb"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    mesh = load_mesh(path)
    assert 18_000 <= mesh.num_faces <= 22_000 and path.stat().st_size < 2_000_000
    assert mesh.uvs is not None and 0 <= mesh.uvs.min() and mesh.uvs.max() <= 1
    assert mesh.positions[:, 1].min() == pytest.approx(0, abs=1e-6)  # Y up, standing on the ground
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
