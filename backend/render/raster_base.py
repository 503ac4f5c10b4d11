"""What every rasterizer shares, below gbuffer.py (which picks among them): the clip planes."""
from __future__ import annotations

import numpy as np

from ..assets.mesh import Mesh
from ..assets.cameras import Camera


def near_far(mesh: Mesh, camera: Camera) -> tuple[float, float]:
    """Clip planes enclosing the mesh's bounding sphere as seen from the camera."""
    centre = (mesh.positions.min(0) + mesh.positions.max(0)) / 2
    radius = float(np.linalg.norm(mesh.positions.max(0) - mesh.positions.min(0))) / 2 + 1e-3
    dist = float(np.dot(centre - camera.position, camera.forward))
    far = dist + radius * 1.01
    near = max(dist - radius * 1.01, far * 1e-4, 1e-4)
    return near, far
