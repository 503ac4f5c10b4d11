"""What the refine pipeline's modules share: its Params, the rendered orbit (Rendered) and the
background every frame is drawn over. Torch-free (the service's HTTP process imports Params)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..bake.params import BakeParams
from ..errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from ..assets.cameras import Camera
    from ..track.geometry import ViewGeometry

BACKGROUND = (1.0, 1.0, 1.0)
CONSISTENCY = ("none", "mv-sd")  # backend.models.mv_consistency.CONSISTENCY (this module stays torch-free)


def rebake_defaults() -> BakeParams:
    """Refine's rebake: MRF over the refined frames with the source view (frame 0) locked where it
    sees the surface, no alignment (the frames are renders of the asset's own geometry), 128 voxels."""
    return BakeParams(method="mrf", voxel_res=128, lock_reference=True, reference_view=0, align=False)


@dataclass
class Params:
    source_view: str = "auto"  # "auto" or N: frame N of a horizontal orbit of `frames` views from the front (+Z)
    inpainter: Literal["opencv", "sd-inpaint"] = "opencv"
    opencv_method: Literal["telea", "shiftmap"] = "telea"  # opencv inpainter: diffusion, or patches copied in
    anchors: list[float] = field(default_factory=lambda: [20.0, 90.0, 180.0])  # stage limits, degrees from the source
    strength: float = 0.3  # sd-inpaint denoising strength
    frames: int = 61  # views per orbit (horizontal and vertical, sharing the source view)
    size: int = 512  # frame size in pixels
    train_lora: bool = True  # sd-inpaint: train (or reuse the cached) subject LoRA
    lora_steps: int = 500
    model: str = "sd-inpaint"  # sd-inpaint model (registry name)
    prompt: str = ""
    tracker: Literal["geometry", "flow", "cotracker"] = "geometry"
    dilate: int = 2  # unseen masks grow by this many pixels
    # meshes: the rebake; bake.texture_size caps the side it bakes at (the result keeps the input texture's size)
    bake: BakeParams = field(default_factory=rebake_defaults)
    iterations: int = 600  # Gaussians: refit iterations
    consistency: Literal["none", "mv-sd"] = "none"  # before the rebake/refit: none, or the mv-sd multi-view stage
    consistency_model: str = "sd-v1-5"  # mv-sd model (registry name)
    consistency_strength: float = 0.2  # mv-sd img2img strength (low: the views are drawn together, not redone)
    time_frames: int = 8  # animated assets: animation frames sampled
    seed: int = 0
    device: str = "auto"

    def rebake(self, input_side: int) -> BakeParams:
        """The bake of a mesh whose texture's largest side is `input_side`: at that side, at most bake.texture_size."""
        from dataclasses import replace

        return replace(self.bake, texture_size=min(self.bake.texture_size, input_side))

    def __post_init__(self) -> None:
        if self.source_view != "auto" and not str(self.source_view).isdigit():
            raise InputError(f"source_view must be 'auto' or a frame index, not {self.source_view!r} "
                             "(give a transforms.json as the `cameras` input for a posed source view)")
        anchors = [float(a) for a in self.anchors]
        if not anchors or any(b <= a for a, b in zip(anchors, anchors[1:])) or anchors[0] <= 0 or anchors[-1] != 180:
            raise InputError(f"anchors must increase from above 0 to 180 degrees (e.g. 20,90,180), not {self.anchors}")
        self.anchors = anchors
        if not 0.0 < self.strength <= 1.0:
            raise InputError("strength must be in (0, 1]")
        if not 4 <= self.frames <= 720:
            raise InputError(f"frames must be between 4 and 720 per orbit (got {self.frames})")
        if not 32 <= self.size <= 2048:
            raise InputError(f"size must be between 32 and 2048 pixels (got {self.size})")
        if self.source_view != "auto" and int(self.source_view) >= self.frames:
            raise InputError(f"source_view {self.source_view} is not a frame of a {self.frames}-frame orbit")
        if not 0 <= self.dilate <= 32 or self.lora_steps < 1 or self.iterations < 1:
            raise InputError("dilate must be 0-32 pixels, lora_steps and iterations positive")
        if not self.bake.lock_reference or self.bake.reference_view != 0:
            raise InputError("refine's rebake keeps the source view (frame 0) where it sees the surface: "
                             "bake.lock_reference must stay true and bake.reference_view 0")
        if self.bake.views_frame != "auto":
            raise InputError("bake.views_frame does not apply to refine: its views are rendered in the asset's frame")
        if not 0.0 < self.consistency_strength <= 1.0:
            raise InputError("consistency_strength must be in (0, 1]")
        if not 2 <= self.time_frames <= 240:
            raise InputError("time_frames must be between 2 and 240")


@dataclass
class Rendered:
    """The asset seen from the refine cameras (index 0 = the source view)."""

    cameras: list["Camera"]
    images: "np.ndarray"  # (N, H, W, 3) float32 over the white background
    masks: "np.ndarray"  # (N, H, W) bool
    views: list["ViewGeometry"]
    orbits: list[list[int]]  # frame indices of each orbit (cyclic, both from frame 0)

