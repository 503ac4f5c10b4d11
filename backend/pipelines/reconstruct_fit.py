"""What every reconstruct path shares (reconstruct.py for a mesh or an image, reconstruct_views.py for a
view set): its Params, the fit's configuration, the initial Gaussians (on a mesh's surface, coloured
by its texture, or in a ball) and the preview strip. Module-level imports stay torch-free (the
service's HTTP process imports Params)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..render.views_frame import VIEWS_FRAMES, ViewsFrame

if TYPE_CHECKING:
    import torch

    from ..assets.mesh import Mesh
    from ..splats.fit import FitConfig
    from ..splats.model import Gaussians

BACKGROUND = (1.0, 1.0, 1.0)


@dataclass
class Params:
    view_count: int = 64  # how many cameras to fit to (the image path rounds up to a frame count the video model makes)
    size: int = 256  # image size of the views the Gaussians are fitted to
    rounds: int = 2  # IM-3D refinement rounds (image path)
    iterations: int = 1000  # fitting iterations of the first fit (at most: a mesh fit stops early); each refit uses half
    gaussians: int = 0  # initial Gaussians (densification adds and removes); 0: size^2 / 2 within 2,000-20,000
    max_gaussians: int = 0  # densification stops growing the model here; 0: twice the initial (a preview's budget)
    sh_degree: int = 3
    strength: float = 0.5  # noise strength of the first refinement round (later rounds use less)
    model: str = "wan2.1-i2v-14b-480p"  # orbit video model (registry name), image path
    steps: int = 30  # denoising steps of the video model
    video_size: int = 480  # square size the video model generates at
    prompt: str = ""  # empty: the default orbit prompt
    seed: int = 0
    device: str = "auto"
    force_cpu: bool = False  # run a large video model on the CPU anyway
    views_frame: ViewsFrame = "auto"  # frame of a view set's cameras: gltf | blender | auto (checked against the mesh)

    def __post_init__(self) -> None:
        if self.gaussians == 0:  # a preview: about one Gaussian per two pixels of a view
            self.gaussians = int(min(20000, max(2000, self.size * self.size // 2)))
        if self.max_gaussians == 0:
            self.max_gaussians = 2 * self.gaussians
        if self.views_frame not in VIEWS_FRAMES:
            raise ValueError(f"unknown views_frame {self.views_frame!r}; use one of {', '.join(VIEWS_FRAMES)}")
        if self.view_count < 2 or self.view_count > 1000:
            raise ValueError("view_count must be between 2 and 1000")
        if self.size < 16 or self.size > 4096:
            raise ValueError("size must be between 16 and 4096")
        if self.rounds < 0 or self.rounds > 10:
            raise ValueError("rounds must be between 0 and 10")
        if self.iterations < 1 or self.gaussians < 1 or self.max_gaussians < self.gaussians:
            raise ValueError("iterations and gaussians must be positive, max_gaussians at least gaussians")
        if not 0 <= self.sh_degree <= 3:
            raise ValueError("sh_degree must be 0..3")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError("strength must be in (0, 1]")
        if self.steps < 1 or self.video_size < 16:
            raise ValueError("steps must be positive and video_size at least 16")


def texture_color_fn(mesh: "Mesh", texture: np.ndarray | None):  # type: ignore[no-untyped-def]
    """colour_fn(face, bary) for model.from_mesh: the texture at each surface sample (None = grey)."""
    if texture is None or mesh.uvs is None:
        return None
    from ..assets.material import sample_texture

    def colors(face: np.ndarray, bary: np.ndarray) -> np.ndarray:
        return sample_texture(texture, (mesh.uvs[mesh.faces[face]] * bary[:, :, None]).sum(1))

    return colors


def fit_config(params: Params, iterations: int, densify: bool = True) -> "FitConfig":
    from ..splats.densify import DensifyConfig
    from ..splats.fit import FitConfig

    densify_config = DensifyConfig(refine_start=min(300, max(iterations // 10, 1)), refine_stop=int(iterations * 0.7),
                                   refine_every=100, reset_every=max(3000, iterations + 1),
                                   max_gaussians=params.max_gaussians)
    return FitConfig(iterations=iterations, sh_degree=params.sh_degree,
                     sh_increase_every=max(iterations // (params.sh_degree + 2), 1), densify=densify,
                     densify_config=densify_config, device=params.device, seed=params.seed)


def load_mesh_and_texture(path: Path) -> tuple["Mesh", "object", np.ndarray | None]:
    from ..assets.material import load_textured_mesh
    from ..assets.mesh import normalize

    textured, texture = load_textured_mesh(path)  # UVs and texture read together: they match
    mesh, norm = normalize(textured)
    if texture is not None and mesh.uvs is None:
        texture = None
    return mesh, norm, texture


def initial_gaussians(mesh: "Mesh | None", texture: np.ndarray | None, params: Params) -> "Gaussians":
    """Gaussians on the mesh's surface (its texture's colours) or, without a mesh, in a ball."""
    from ..splats.model import from_mesh

    if mesh is None:
        return random_ball(params.gaussians, params.sh_degree, params.seed)
    return from_mesh(mesh, params.gaussians, texture_color_fn(mesh, texture), params.sh_degree, seed=params.seed)


def random_ball(count: int, sh_degree: int, seed: int) -> "Gaussians":
    from ..splats.model import from_points

    rng = np.random.default_rng(seed)
    d = rng.normal(size=(count, 3))
    points = d / np.linalg.norm(d, axis=1, keepdims=True) * 0.45 * rng.random((count, 1)) ** (1 / 3)
    return from_points(points.astype(np.float32), None, sh_degree=sh_degree, opacity=0.1)


def write_preview(rendered: "torch.Tensor", path: Path, count: int = 8) -> None:
    """A strip of `count` evenly spaced renders of the fit."""
    from PIL import Image

    n = rendered.shape[0]
    pick = np.linspace(0, n - 1, min(count, n)).round().astype(int)
    strip = np.concatenate([rendered[i].numpy() for i in pick], axis=1)
    Image.fromarray((np.clip(strip, 0, 1) * 255).round().astype(np.uint8)).save(path)
