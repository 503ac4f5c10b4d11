"""3DGS PLY files (the layout of the original 3DGS code, read by the common splat viewers).

One binary little-endian `vertex` element of float32 properties, in this order:
  x y z                position
  nx ny nz             zeros (kept for viewers that expect them)
  f_dc_0 f_dc_1 f_dc_2 SH DC term per channel (rgb = 0.5 + 0.2820948 * f_dc)
  f_rest_0 ..          higher SH coefficients, channel-major: f_rest_{c * (K - 1) + (k - 1)}, K = (degree + 1)^2
  opacity              logit of the opacity
  scale_0 scale_1 scale_2   log standard deviations
  rot_0 rot_1 rot_2 rot_3   quaternion (w, x, y, z), not necessarily unit length
Float32 in, float32 out: writing then reading gives back the same bits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .model import Gaussians, sh_degree_of


def property_names(sh_degree: int) -> list[str]:
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def write_ply(gaussians: Gaussians, path: str | Path) -> Path:
    """Write `gaussians` as a 3DGS PLY (binary little-endian)."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    g = gaussians.detach().to("cpu")
    n, k = len(g), g.sh.shape[1]
    sh = g.sh.float().numpy()
    columns = [g.means.float().numpy(), np.zeros((n, 3), np.float32), sh[:, 0, :],
               sh[:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (k - 1)),  # channel-major
               g.opacity_logits.float().numpy()[:, None], g.log_scales.float().numpy(), g.quats.float().numpy()]
    data = np.concatenate(columns, axis=1).astype(np.float32)
    names = property_names(sh_degree_of(k))
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
    missing = [n for n in property_names(degree) if n not in names and n not in ("nx", "ny", "nz")]
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
