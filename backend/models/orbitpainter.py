"""OrbitPainter (Ink3D): its LoRAs on Wan2.2-Fun-A14B-Control, run through DiffSynth.

Ink3D's settings: the position orbit video is the Fun control video, the normal orbit video is an
extra input (its VAE latents are appended to the control latents, so each expert's patch
embedding takes 68 channels instead of 52; the LoRA files carry those patch embeddings), the
reference image is on black, 50 steps, cfg 6, sigma shift 5, the high-noise expert hands over to
the low-noise one at t = 0.875, prompt "This is a 3D model". The vertical orbit keeps the
horizontal orbit's frame 0: its first latent frame is reset to that frame's latent (noised to the
current level) after every step, the mechanism masked mode uses for the pixels it keeps.

DiffSynth imports torchvision at package import; where torchvision cannot be installed (the CPU
test machines) the generator refuses with a message saying so, before any work.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..assets.mesh import Mesh
from ..errors import OrbitexError
from ..progress import Progress
from ..render.conditioning import encode_normals, encode_positions
from .generators import GenerateOptions, Orbit, Reference, composite, pick_device, validate_modes

STEPS = 50
CFG = 6.0
SIGMA_SHIFT = 5.0
SWITCH_BOUNDARY = 0.875
NORMAL_CHANNELS = 16  # VAE latent channels of the normal video appended to the control latents
NEGATIVE_PROMPT = "blurry, low quality, distorted, text, watermark, background clutter, static"


class MissingPackageError(OrbitexError):
    """A Python package a generator needs is not installed (or cannot be imported)."""


def require_diffsynth() -> None:
    try:
        import diffsynth.pipelines.wan_video  # noqa: F401
    except ImportError as exc:
        raise MissingPackageError(
            "the orbitpainter generator runs through DiffSynth (pip install diffsynth), which needs torchvision; "
            f"it cannot be imported in this backend environment ({exc}). Install both on the GPU machine "
            "(pip install diffsynth torchvision matching its torch), or use --generator wan-vace or projection") from None


def lora_files(folder: Path) -> tuple[Path, Path]:
    high = sorted(folder.glob("high_noise*.safetensors"))
    low = sorted(folder.glob("low_noise*.safetensors"))
    return high[-1], low[-1]


def load_pipeline(device: str) -> Any:
    """Wan2.2-Fun-A14B-Control with OrbitPainter's patch embeddings and LoRAs, all from the registry."""
    from diffsynth.core import ModelConfig
    from diffsynth.pipelines.wan_video import WanVideoPipeline

    from .registry import resolve

    base, encoders, lora = (resolve(n) for n in ("wan2.2-fun-a14b-control", "wan2.1-t2v-1.3b-encoders", "orbitpainter"))
    dtype = torch.bfloat16

    def shards(sub: str) -> list[str]:
        return sorted(glob.glob(str(base / sub / "*.safetensors")))

    pipe = WanVideoPipeline.from_pretrained(
        torch_dtype=dtype, device=device, redirect_common_files=False,
        model_configs=[ModelConfig(path=shards("high_noise_model"), offload_device="cpu"),
                       ModelConfig(path=shards("low_noise_model"), offload_device="cpu"),
                       ModelConfig(path=str(encoders / "models_t5_umt5-xxl-enc-bf16.pth"), offload_device="cpu"),
                       ModelConfig(path=str(encoders / "Wan2.1_VAE.pth"), offload_device="cpu")],
        tokenizer_config=ModelConfig(path=str(encoders / "google" / "umt5-xxl")))
    high, low = lora_files(lora)
    for dit, file in ((pipe.dit, high), (pipe.dit2, low)):
        _widen_patch_embedding(dit, file)
    pipe.load_lora(pipe.dit, str(high), alpha=1)
    pipe.load_lora(pipe.dit2, str(low), alpha=1)
    _install_normal_unit(pipe)
    return pipe


def _widen_patch_embedding(dit: Any, lora_file: Path) -> None:
    """Replace the expert's patch embedding by the wider one stored in the LoRA file."""
    from safetensors.torch import load_file

    state = load_file(str(lora_file))
    weight, bias = state["patch_embedding.weight"], state.get("patch_embedding.bias")
    old = dit.patch_embedding
    new = torch.nn.Conv3d(weight.shape[1], old.out_channels, old.kernel_size, old.stride, old.padding,
                          bias=bias is not None)
    new.load_state_dict({"weight": weight, **({"bias": bias} if bias is not None else {})})
    dit.patch_embedding = new.to(device=old.weight.device, dtype=old.weight.dtype)


def _install_normal_unit(pipe: Any) -> None:
    """Swap DiffSynth's Fun control unit for one that appends the normal video's latents."""
    from diffsynth.pipelines.wan_video import WanVideoUnit_FunControl

    class NormalFunControl(WanVideoUnit_FunControl):
        normal_video: list | None = None

        def process(self, pipe, control_video, num_frames, height, width, tiled, tile_size, tile_stride,  # type: ignore[no-untyped-def]
                    clip_feature, y, latents):
            out = super().process(pipe, control_video, num_frames, height, width, tiled, tile_size, tile_stride,
                                  clip_feature, y, latents)
            if not out or self.normal_video is None:
                return out
            video = pipe.preprocess_video(self.normal_video)
            normal = pipe.vae.encode(video, device=pipe.device, tiled=tiled, tile_size=tile_size,
                                     tile_stride=tile_stride).to(dtype=pipe.torch_dtype, device=pipe.device)
            out["y"] = torch.cat([out["y"], normal], dim=1)
            return out

    unit = NormalFunControl()
    pipe.units = [unit if isinstance(u, WanVideoUnit_FunControl) else u for u in pipe.units]
    pipe.orbitex_normal_unit = unit


class OrbitPainterGenerator:
    name = "orbitpainter"

    def __init__(self) -> None:
        self.pipe: Any = None
        self.calls: list[dict[str, Any]] = []

    def generate(self, mesh: Mesh, orbits: Sequence[Orbit], reference: Reference, options: GenerateOptions,
                 progress: Progress) -> dict[str, np.ndarray]:
        from .wan_vace import _pil, _square, check_shape

        validate_modes(orbits, options)
        n, size = len(orbits[0]), orbits[0].gbuffers.mask.shape[1]
        check_shape(n, size, self.name)
        require_diffsynth()
        device = pick_device(options.device)
        progress(0.0, "orbitpainter: loading Wan2.2-Fun-A14B-Control + LoRAs")
        if self.pipe is None:
            self.pipe = load_pipeline(device)
        pipe = self.pipe
        ref_image = _pil(_square(reference, size))
        frames: dict[str, np.ndarray] = {}
        for k, orbit in enumerate(orbits):
            positions = encode_positions(orbit.gbuffers.position, orbit.gbuffers.mask)
            normals = encode_normals(orbit.gbuffers.normal, orbit.gbuffers.mask)
            pipe.orbitex_normal_unit.normal_video = [_pil(f) for f in normals]
            init = options.init_frames.get(orbit.name) if options.init_frames else None
            mask = options.masks.get(orbit.name) if options.masks else None
            keep = np.zeros((n, size, size), dtype=bool)  # pixels whose latents are held to `source`
            source = init.copy() if init is not None and mask is not None else np.zeros((n, size, size, 3), np.float32)
            if mask is not None and init is not None:
                keep |= ~mask
            shared = frames.get("horizontal") if orbit.name == "vertical" else None
            if shared is not None:
                source[0], keep[0] = shared[0], True
            kwargs: dict[str, Any] = dict(
                prompt=options.prompt, negative_prompt=options.negative_prompt or NEGATIVE_PROMPT,
                reference_image=ref_image, control_video=[_pil(f) for f in positions], num_frames=n,
                height=size, width=size, seed=options.seed, tiled=True,
                cfg_scale=options.guidance if options.guidance is not None else CFG,
                num_inference_steps=options.steps or STEPS, sigma_shift=SIGMA_SHIFT,
                switch_DiT_boundary=SWITCH_BOUNDARY, progress_bar_cmd=lambda x: x)
            if init is not None and options.strength < 1.0:
                kwargs.update(input_video=[_pil(f) for f in init], denoising_strength=options.strength)
            restore = _hold_latents(pipe, source, keep, options.seed, device) if keep.any() else None
            try:
                video = pipe(**kwargs)
            finally:
                if restore is not None:
                    restore()
            out = np.stack([np.asarray(f, dtype=np.float32) / 255.0 for f in video])
            out = composite(out, init, mask)
            if shared is not None:
                out[0] = shared[0]
            frames[orbit.name] = out
            self.calls.append({"orbit": orbit.name, "strength": options.strength, "masked": mask is not None,
                               "kept_frames": [0] if shared is not None else []})
            progress((k + 1) / len(orbits), f"orbitpainter: {orbit.name} orbit done")
        return frames


def _hold_latents(pipe: Any, source: np.ndarray, keep: np.ndarray, seed: int, device: str) -> Any:
    """After every scheduler step, latents where `keep` holds are reset to the source frames'
    latents noised to the next sigma (x <- m * x + (1 - m) * noised source). Returns an undo."""
    from .wan_vace import _latent_mask

    video = torch.from_numpy(source).permute(3, 0, 1, 2)[None].to(device, pipe.torch_dtype) * 2 - 1
    with torch.no_grad():
        src = pipe.vae.encode(video, device=pipe.device, tiled=True).to(dtype=pipe.torch_dtype, device=pipe.device)
    shape = torch.Size([1, 1, src.shape[2] + 1, *src.shape[3:]])
    regen = _latent_mask(~keep, shape)[:, :, 1:].to(src)  # drop _latent_mask's reference slot
    noise = torch.randn(src.shape, generator=torch.Generator("cpu").manual_seed(seed + 1)).to(src)
    scheduler = pipe.scheduler
    original = scheduler.step

    def step(model_output, timestep, sample, *args, **kwargs):  # type: ignore[no-untyped-def]
        prev = original(model_output, timestep, sample, *args, **kwargs)
        index = int(torch.argmin((scheduler.timesteps - timestep.cpu()).abs()))
        sigma = float(scheduler.sigmas[index + 1]) if index + 1 < len(scheduler.sigmas) else 0.0
        target = prev[:, :, -src.shape[2]:]  # a VACE reference slot, if any, stays in front
        held = regen * target + (1 - regen) * ((1 - sigma) * src + sigma * noise)
        return torch.cat([prev[:, :, :prev.shape[2] - src.shape[2]], held], dim=2)

    scheduler.step = step

    def restore() -> None:
        del scheduler.step
    return restore
