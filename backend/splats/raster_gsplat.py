"""gsplat (CUDA) Gaussian rasterizer behind the same `render` interface as raster_torch.

gsplat 1.5.3 is a pure-Python wheel whose CUDA kernels are compiled on first use (needs the CUDA
toolkit); it is installed on GPU machines only: pip install gsplat==1.5.3.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..render.cameras import Camera
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


def camera_matrices(camera: Camera, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """gsplat's viewmat (world-to-camera, OpenCV axes: +Z forward, +Y down) and intrinsics K."""
    viewmat = np.diag([1.0, -1.0, -1.0, 1.0]) @ camera.w2c()
    k = np.array([[camera.fx, 0.0, camera.cx], [0.0, camera.fy, camera.cy], [0.0, 0.0, 1.0]])
    return (torch.as_tensor(viewmat, dtype=torch.float32, device=device)[None],
            torch.as_tensor(k, dtype=torch.float32, device=device)[None])


def render_with_info(g: Gaussians, camera: Camera, background: tuple[float, float, float] | torch.Tensor = (1.0, 1.0, 1.0),
                     sh_degree: int | None = None, absgrad: bool = False) -> tuple[Render, dict[str, Any]]:
    """Render one view with gsplat; also returns gsplat's `info` (for its densification strategy)."""
    try:
        from gsplat import rasterization
    except ImportError:
        raise InputError(f"the gsplat rasterizer is not installed: pip install gsplat=={GSPLAT_VERSION}") from None
    if g.device.type != "cuda":
        raise InputError("the gsplat rasterizer needs the Gaussians on a CUDA device")
    viewmat, k = camera_matrices(camera, g.device)
    degree = g.sh_degree if sh_degree is None else min(sh_degree, g.sh_degree)
    colors, alphas, info = rasterization(
        g.means, g.quats, g.scales(), g.opacities(), g.sh, viewmat, k, camera.width, camera.height,
        near_plane=NEAR_PLANE, eps2d=EPS_2D, sh_degree=degree, packed=False, render_mode="RGB+D",
        absgrad=absgrad, rasterize_mode="classic")
    bg = torch.as_tensor(background, dtype=torch.float32, device=g.device).reshape(3)
    alpha = alphas[0, ..., 0]
    color = colors[0, ..., :3] + (1.0 - alpha)[..., None] * bg
    radii = info["radii"][0]
    radii = radii.max(-1).values if radii.ndim == 2 else radii
    visible = torch.nonzero(radii > 0)[:, 0]
    return Render(color, alpha, colors[0, ..., 3], info["means2d"][0][visible], visible, radii[visible].float()), info


def render(g: Gaussians, camera: Camera, background: tuple[float, float, float] | torch.Tensor = (1.0, 1.0, 1.0),
           sh_degree: int | None = None) -> Render:
    return render_with_info(g, camera, background, sh_degree)[0]
