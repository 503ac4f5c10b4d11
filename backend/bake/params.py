"""Options of a bake (torch-free: the service's HTTP process imports it for validation)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import InputError
from ..render.views_frame import VIEWS_FRAMES, ViewsFrame

DEFAULT_FIT_STEPS = 300
METHODS = ("mrf", "greedy", "average", "optimize")
FILLS = ("synthesis", "bfs")
Method = Literal["mrf", "greedy", "average", "optimize"]


@dataclass
class BakeParams:
    method: Method = "mrf"  # view selection: MRF (Ink3D), greedy, confidence-weighted average, or optimize (average + fit)
    texture_size: int = 2048  # texture side in texels
    voxel_res: int = 256  # surface voxels across the mesh's largest bounding-box side
    uv_map: str | None = None  # TEXCOORD_n (or n) of a glTF; None = the first UV map
    top_k: int = 30  # views kept per voxel (by confidence)
    mrf_lambda: float = 5.0  # Potts weight lambda of lambda / (1 + beta * colour difference)
    detail_weight: float = 0.5  # mrf/greedy unary + weight x how much blurrier a frame is than the sharpest (0: Ink3D's)
    consistency_weight: float = 0.0  # mrf/greedy unary + weight x a view's disagreement with the voxel's consensus colour
    resolution_weight: float = 1.0  # mrf/greedy unary + weight x how much coarser a view samples the voxel than its closest view (0: Ink3D's)
    soft_selection: float = 0.1  # mrf/greedy: texels blend the views within ~this unary cost of their label's (0: the label's view alone)
    sharpen: float = 1.0  # unsharp-mask amount (1 px) of the views colours are read from (undoes pixel integration; 0: off)
    mrf_iterations: int = 1  # alpha-expansion cycles over all labels (-1: until convergence)
    depth_tolerance: float = 0.01  # visibility depth test, as a fraction of the largest box side
    edge_margin: int = 2  # pixels near silhouettes / depth jumps count as unseen (misaligned views)
    lock_reference: bool = False  # voxels seen within `lock_angle` of the reference view take it (and no texture fit)
    reference_view: int = 0  # index of the reference view (frame 0 of Ink3D's orbits)
    lock_angle: float = 60.0  # degrees
    seam_levelling: bool = True  # global per-label colour offsets that make seams agree
    seam_blend: bool = True  # then feather colours across label seams, one voxel each side (seams.blend_strips)
    align: bool = True  # warp and colour-correct each view onto the surface before selection (align.py)
    align_passes: int = 2  # estimate -> flow -> warp rounds (the second's estimate is made of the aligned views)
    align_max_shift: float = 8.0  # largest misalignment corrected, in pixels
    # mrf/greedy/optimize: steps of the texture fit to the views (fit.py; 0: off; `average` never fits).
    # None: DEFAULT_FIT_STEPS for view sets, 0 for the texture job's generated frames (pipelines/texture.py)
    fit_steps: int | None = None
    rasterizer: str = "auto"  # G-buffer rasterizer: auto | moderngl | torch | nvdiffrast
    views_frame: ViewsFrame = "auto"  # the cameras' frame: gltf (the mesh file's) | blender (Z up) | auto (checked)
    fill: Literal["synthesis", "bfs"] = "synthesis"  # unseen surface: symmetry transfer + exemplar synthesis, BFS for the rest; or BFS alone

    def __post_init__(self) -> None:
        if self.views_frame not in VIEWS_FRAMES:
            raise InputError(f"unknown views_frame {self.views_frame!r}; use one of {', '.join(VIEWS_FRAMES)}")
        if self.method not in METHODS:
            raise InputError(f"unknown bake method {self.method!r}; use one of {', '.join(METHODS)}")
        if not 16 <= self.texture_size <= 16384:
            raise InputError(f"texture_size must be between 16 and 16384, not {self.texture_size}")
        if not 4 <= self.voxel_res <= 4096:
            raise InputError(f"voxel_res must be between 4 and 4096, not {self.voxel_res}")
        if self.top_k < 1:
            raise InputError("top_k must be at least 1")
        if min(self.detail_weight, self.consistency_weight, self.resolution_weight, self.sharpen, self.soft_selection) < 0:
            raise InputError("detail_weight, consistency_weight, resolution_weight, sharpen and soft_selection must be >= 0")
        if self.mrf_lambda < 0 or not self.depth_tolerance > 0 or self.edge_margin < 0:
            raise InputError("mrf_lambda and edge_margin must be >= 0 and depth_tolerance > 0")
        if self.mrf_iterations == 0 or self.mrf_iterations < -1:
            raise InputError("mrf_iterations must be -1 (until convergence) or a positive count")
        if not 0 < self.lock_angle <= 90:
            raise InputError("lock_angle must be in (0, 90] degrees")
        if self.align_passes < 1 or not self.align_max_shift > 0:
            raise InputError("align_passes must be at least 1 and align_max_shift > 0")
        if self.fill not in FILLS:
            raise InputError(f"unknown fill {self.fill!r}; use one of {', '.join(FILLS)}")
        if self.fit_steps is not None and self.fit_steps < 0:
            raise InputError("fit_steps must be >= 0")
        if self.method == "optimize" and self.fit_steps == 0:
            raise InputError("the optimize method is the texture fit: give it fit_steps > 0 (--fit-steps)")
