"""gsplat (CUDA) Gaussian rasterizer behind the same `render` interface as raster_torch.

gsplat 1.5.3 is a pure-Python wheel whose CUDA kernels are compiled on first use (needs the CUDA
toolkit); it is installed on GPU machines only: pip install gsplat==1.5.3.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..assets.cameras import Camera
from .model import Gaussians
from .raster_torch import EPS_2D, NEAR_PLANE, Render

GSPLAT_VERSION = "1.5.3"


def available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def camera_matrices(cameras: Sequence[Camera], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """gsplat's batched viewmats [C, 4, 4] (world-to-camera, OpenCV axes: +Z forward, +Y down) and
    intrinsics Ks [C, 3, 3]."""
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    viewmats = np.stack([flip @ c.w2c() for c in cameras])
    ks = np.stack([np.array([[c.fx, 0.0, c.cx], [0.0, c.fy, c.cy], [0.0, 0.0, 1.0]]) for c in cameras])
    return (torch.as_tensor(viewmats, dtype=torch.float32, device=device),
            torch.as_tensor(ks, dtype=torch.float32, device=device))


def render_batch(g: Gaussians, cameras: Sequence[Camera], background: tuple[float, float, float] | torch.Tensor = (1.0, 1.0, 1.0),
                 sh_degree: int | None = None, absgrad: bool = False) -> tuple[list[Render], dict[str, Any]]:
    """Render C views of one size in one gsplat call; also returns gsplat's `info` (batched [C, N, ...],
    what its densification strategies read)."""
    try:
        from gsplat import rasterization
    except ImportError:
        raise InputError(f"the gsplat rasterizer is not installed: pip install gsplat=={GSPLAT_VERSION}") from None
    if g.device.type != "cuda":
        raise InputError("the gsplat rasterizer needs the Gaussians on a CUDA device")
    if not cameras:
        raise InputError("no cameras to render")
    width, height = cameras[0].width, cameras[0].height
    if any((c.width, c.height) != (width, height) for c in cameras):
        raise InputError("gsplat renders a batch of cameras of one image size")
    viewmats, ks = camera_matrices(cameras, g.device)
    degree = g.sh_degree if sh_degree is None else min(sh_degree, g.sh_degree)
    colors, alphas, info = rasterization(
        g.means, g.quats, g.scales(), g.opacities(), g.sh, viewmats, ks, width, height,
        near_plane=NEAR_PLANE, eps2d=EPS_2D, sh_degree=degree, packed=False, render_mode="RGB+D",
        absgrad=absgrad, rasterize_mode="classic")
    bg = torch.as_tensor(background, dtype=torch.float32, device=g.device).reshape(3)
    renders = []
    for c in range(len(cameras)):
        alpha = alphas[c, ..., 0]
        radii = info["radii"][c]
        radii = radii.max(-1).values if radii.ndim == 2 else radii  # 1.5.x: [N, 2] per axis
        visible = torch.nonzero(radii > 0)[:, 0]
        renders.append(Render(colors[c, ..., :3] + (1.0 - alpha)[..., None] * bg, alpha, colors[c, ..., 3],
                              info["means2d"][c][visible], visible, radii[visible].float()))
    return renders, info


def render(g: Gaussians, camera: Camera, background: tuple[float, float, float] | torch.Tensor = (1.0, 1.0, 1.0),
           sh_degree: int | None = None) -> Render:
    return render_batch(g, [camera], background, sh_degree)[0][0]
