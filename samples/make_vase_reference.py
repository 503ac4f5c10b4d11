"""Make samples/vase_reference.png, the reference image of the demo (run with the backend env:
.venv/backend/bin/python samples/make_vase_reference.py).

A painted front view of samples/vase.glb, as an artist would paint a concept over one view: the
vase's own silhouette and surface positions from the reference camera (frame 0 of the orbit,
512 x 512) carry a blue-and-white porcelain glaze: bands by height, a scalloped rim band, leaf
sprays around the belly (laid out by azimuth, so they sit on the surface), soft light from the
upper left. Alpha is the silhouette.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
SIZE = 512
WHITE = np.array([0.93, 0.92, 0.87])
BLUE = np.array([0.12, 0.22, 0.55])
PALE = np.array([0.55, 0.66, 0.86])


def paint(position: np.ndarray, normal: np.ndarray, mask: np.ndarray) -> np.ndarray:
    y = position[..., 1] + 0.5  # 0 at the foot, ~1 at the lip (normalized frame)
    azimuth = np.arctan2(position[..., 0], position[..., 2])
    colour = np.broadcast_to(WHITE, position.shape).copy()

    def blend(where: np.ndarray, tint: np.ndarray, amount: float | np.ndarray = 1.0) -> None:
        a = (where * amount)[..., None]
        colour[:] = colour * (1 - a) + tint * a

    blend((y < 0.06), BLUE)  # foot ring
    blend((np.abs(y - 0.12) < 0.012), BLUE)
    scallop = 0.86 + 0.03 * np.cos(azimuth * 12)
    blend((y > scallop) & (y < 0.95), BLUE)  # scalloped band under the lip
    blend((np.abs(y - 0.82) < 0.008), BLUE)
    blend((y > 0.95), PALE)
    # leaf sprays on the belly: ellipses along wavy stems, 6 around the vase
    stem_phase = azimuth * 3 + np.sin(y * 14) * 0.6
    stem = np.abs(np.sin(stem_phase)) < 0.05
    blend(stem & (y > 0.2) & (y < 0.7), BLUE)
    for k in range(5):
        cy = 0.25 + 0.1 * k
        leaf_az = np.mod(azimuth * 3 + k * 1.1, 2 * np.pi) - np.pi
        d = (leaf_az / 0.45) ** 2 + ((y - cy) / 0.035) ** 2
        blend(d < 1, BLUE, np.clip(1.2 - d, 0, 1))
        blend(d < 0.35, PALE)
    # gentle light from the upper left and a rim darkening, like a painted study
    light = np.array([-0.4, 0.5, 0.77])
    shade = 0.78 + 0.22 * np.clip((normal * light).sum(-1), 0, 1)
    colour *= shade[..., None]
    return np.clip(colour * mask[..., None], 0, 1).astype(np.float32)


def main() -> None:
    from backend.assets.images import write_png
    from backend.assets.mesh import normalize
    from backend.assets.load import load_mesh
    from backend.assets.cameras import ORBIT_VFOV_DEG, Camera, reference_c2w
    from backend.render.gbuffer import render_gbuffers

    mesh, _ = normalize(load_mesh(HERE / "vase.glb"))
    camera = Camera.from_fov(reference_c2w(), ORBIT_VFOV_DEG, SIZE, SIZE)
    g = render_gbuffers(mesh, [camera], "torch")
    mask = g.mask[0].numpy()
    rgb = paint(g.position[0].numpy(), g.normal[0].numpy(), mask)
    out = write_png(HERE / "vase_reference.png", np.concatenate([rgb, mask[..., None].astype(np.float32)], -1))
    print(out)


if __name__ == "__main__":
    main()
