"""3DGS PLY files: the property set of the reference 3DGS layout that splat readers detect.

One binary little-endian `vertex` element of float32 properties, in this order (the 14 / 23 / 38 /
59 properties of SH degree 0 / 1 / 2 / 3 that e.g. gsply's detect_format matches exactly):
  x y z                position
  f_dc_0 f_dc_1 f_dc_2 SH DC term per channel (rgb = 0.5 + 0.2820948 * f_dc)
  f_rest_0 ..          higher SH coefficients, channel-major: f_rest_{c * (K - 1) + (k - 1)}, K = (degree + 1)^2
  opacity              logit of the opacity
  scale_0 scale_1 scale_2   log standard deviations
  rot_0 rot_1 rot_2 rot_3   unit quaternion (w, x, y, z)
`normals=True` adds the original 3DGS code's zero nx ny nz after x y z, for tools that want them
(readers that match the property set exactly then refuse the file). Reading takes either. Float32
in, float32 out: what is written reads back bit for bit (quaternions as written: unit length).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .model import Gaussians, sh_degree_of


NORMAL_NAMES = ("nx", "ny", "nz")


def property_names(sh_degree: int, normals: bool = False) -> list[str]:
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z"] + (list(NORMAL_NAMES) if normals else []) + ["f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def unit_quaternions(quats: np.ndarray) -> np.ndarray:
    """(N, 4) float32 quaternions of unit length; those already unit to float32 precision keep
    their bits (so unit quaternions round-trip exactly)."""
    q = np.asarray(quats, np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    unit = np.abs(norm - 1.0) <= 1e-6
    return np.where(unit, quats, q / np.maximum(norm, 1e-30)).astype(np.float32)


def write_ply(gaussians: Gaussians, path: str | Path, normals: bool = False) -> Path:
    """Write `gaussians` as a 3DGS PLY (binary little-endian), quaternions normalized to unit length;
    `normals` adds zero nx ny nz (see the module docstring)."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    g = gaussians.detach().to("cpu")
    n, k = len(g), g.sh.shape[1]
    sh = g.sh.float().numpy()
    quats = unit_quaternions(g.quats.numpy())
    columns = [g.means.float().numpy(), *([np.zeros((n, 3), np.float32)] if normals else []), sh[:, 0, :],
               sh[:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (k - 1)),  # channel-major
               g.opacity_logits.float().numpy()[:, None], g.log_scales.float().numpy(), quats]
    data = np.concatenate(columns, axis=1).astype(np.float32)
    names = property_names(sh_degree_of(k), normals)
    vertices = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        vertices[name] = data[:, i]
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertices, "vertex")], text=False, byte_order="<").write(str(path))
    return path


def read_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS PLY; raises InputError naming the file when it is not one or is damaged."""
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            ply = PlyData.read(f, mmap=False)
        vertex = ply["vertex"]
        data = vertex.data
        names = list(data.dtype.names or ())
    except KeyError:
        raise InputError(f"{path.name}: the PLY has no 'vertex' element, so it holds no Gaussians") from None
    except Exception as exc:  # plyfile raises PlyParseError, ValueError, EOFError, ... for damaged files
        raise InputError(f"{path.name}: not a readable PLY file, it may be truncated or corrupt "
                         f"({type(exc).__name__}: {exc})") from None
    rest = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n[7:]) if n[7:].isdigit() else -1)
    if len(rest) % 3:
        raise InputError(f"{path.name}: {len(rest)} f_rest_* properties is not a multiple of 3")
    try:
        degree = sh_degree_of(1 + len(rest) // 3)
    except InputError as exc:
        raise InputError(f"{path.name}: {exc}") from None
    missing = [n for n in property_names(degree) if n not in names]
    if missing:
        raise InputError(f"{path.name}: not a 3DGS PLY, missing properties {', '.join(missing[:6])}"
                         f"{' ...' if len(missing) > 6 else ''}")
    if len(data) == 0:
        raise InputError(f"{path.name}: the PLY holds no Gaussians")

    def cols(keys: list[str]) -> np.ndarray:
        return np.stack([np.asarray(data[k], dtype=np.float32) for k in keys], axis=1)

    n, k = len(data), (degree + 1) ** 2
    means = cols(["x", "y", "z"])
    dc = cols(["f_dc_0", "f_dc_1", "f_dc_2"])
    sh_rest = cols(rest).reshape(n, 3, k - 1).transpose(0, 2, 1) if rest else np.zeros((n, 0, 3), np.float32)
    sh = np.concatenate([dc[:, None, :], sh_rest], axis=1)
    opacity = np.asarray(data["opacity"], dtype=np.float32)
    scales = cols(["scale_0", "scale_1", "scale_2"])
    quats = cols(["rot_0", "rot_1", "rot_2", "rot_3"])
    for name, array in (("positions", means), ("colours", sh), ("opacities", opacity), ("scales", scales),
                        ("rotations", quats)):
        bad = ~np.isfinite(array.reshape(n, -1)).all(axis=1)
        if bad.any():
            raise InputError(f"{path.name}: Gaussian {int(np.argmax(bad))} has non-finite {name} "
                             f"({int(bad.sum())} damaged in all)")
    if (np.linalg.norm(quats, axis=1) == 0).any():
        raise InputError(f"{path.name}: Gaussian {int(np.argmax(np.linalg.norm(quats, axis=1) == 0))} has a zero rotation quaternion")
    return Gaussians(torch.from_numpy(np.ascontiguousarray(means)), torch.from_numpy(np.ascontiguousarray(scales)),
                     torch.from_numpy(np.ascontiguousarray(quats)), torch.from_numpy(np.ascontiguousarray(opacity)),
                     torch.from_numpy(np.ascontiguousarray(sh)))
