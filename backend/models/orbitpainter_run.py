"""OrbitPainter generation inside the DiffSynth interpreter (.venv/diffsynth): the child process
that `orbitpainter.OrbitPainterGenerator` starts.

    python -m backend.models.orbitpainter_run REPORT_FD

It reads one request a line on stdin ({"folder": REQUEST_DIR}); REQUEST_DIR holds request.json (model folders, device, options) and request.npz (per orbit the
position and normal control videos in Ink3D's encoding as uint8, optional init frames and a
regenerate mask, the reference on black). The child writes result.npz there (frames per orbit,
float32 in [0, 1], as decoded: not composited) and reports on REPORT_FD, one JSON object a line:
{"progress": f, "stage": s} after loading and after every denoising step, then {"done": true},
or {"error": msg} on a failure the user can act on. It keeps the pipeline loaded for the next
request. Only numpy, torch, PIL and DiffSynth are needed here.

Loading (the real weights and the test models alike) is DiffSynth's own: from_pretrained with the
files' paths, then `load_lora` on each expert. DiffSynth knows a model file by a hash of its keys
and shapes; a model folder may carry `diffsynth_models.json` describing architectures it does not
know (fine-tunes of another width, the tests' tiny models), which are registered with DiffSynth
before loading: [{"file": "...", "model_name": "wan_video_dit", "model_class": "...",
"extra_kwargs": {...}}].

Ink3D's settings: the position orbit video is the Fun control video, the normal orbit video's VAE
latents are appended to the control latents (each expert's patch embedding takes 68 channels
instead of 52; the LoRA files carry those patch embeddings), the reference image is on black,
cfg 6, sigma shift 5, the high-noise expert hands over to the low-noise one at t = 0.875. The
vertical orbit's first latent frame is held to the horizontal orbit's frame 0 (wan_common's
held scheduler, the mechanism masked mode uses for the pixels it keeps).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

import numpy as np
import torch

from ..errors import OrbitexError
from .held import LatentHold, held_scheduler, scheduler_swapped, seeded_noise, start_step
from .wan_common import from_pil, latent_mask

ARCHITECTURES_FILE = "diffsynth_models.json"
SIGMA_SHIFT = 5.0
SWITCH_BOUNDARY = 0.875
TEXT_ENCODER_FILE = "models_t5_umt5-xxl-enc-bf16"  # .safetensors (DiffSynth's conversion) or .pth
VAE_FILE = "Wan2.1_VAE"
TOKENIZER_FOLDER = "google/umt5-xxl"


class RequestError(Exception):
    """Something about the request or the installed files the user can fix."""


def _weights_file(folder: Path, stem: str) -> str:
    for suffix in (".safetensors", ".pth"):
        if (folder / (stem + suffix)).is_file():
            return str(folder / (stem + suffix))
    raise RequestError(f"{folder}: no {stem}.safetensors or {stem}.pth")


def register_architectures(folders: Iterable[Path]) -> None:
    """Add the architectures named in the folders' diffsynth_models.json to DiffSynth's table."""
    from diffsynth.configs import MODEL_CONFIGS
    from diffsynth.core.loader import hash_model_file

    known = {c["model_hash"] for c in MODEL_CONFIGS}
    for folder in folders:
        table = folder / ARCHITECTURES_FILE
        if not table.is_file():
            continue
        for entry in json.loads(table.read_text()):
            digest = hash_model_file(str(folder / entry["file"]))
            if digest not in known:
                known.add(digest)
                MODEL_CONFIGS.append({"model_hash": digest, **{k: v for k, v in entry.items() if k != "file"}})


def load_pipeline(base: Path, encoders: Path, lora: dict[str, Path], device: str) -> Any:
    """Wan2.2-Fun-A14B-Control (both experts) with OrbitPainter's patch embeddings and LoRAs."""
    from diffsynth.core import ModelConfig
    from diffsynth.pipelines.wan_video import WanVideoPipeline

    register_architectures([base, encoders])
    cuda = device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    # Offloading to the CPU between stages only helps on a GPU; on the CPU it would also call
    # torch.cpu.empty_cache, which torch does not have.
    offload = {"offload_device": "cpu"} if cuda else {}

    def shards(sub: str) -> list[str]:
        files = sorted(str(p) for p in (base / sub).glob("*.safetensors"))
        if not files:
            raise RequestError(f"{base / sub}: no .safetensors files")
        return files

    pipe = WanVideoPipeline.from_pretrained(
        torch_dtype=dtype, device=device, redirect_common_files=False,
        model_configs=[ModelConfig(path=shards("high_noise_model"), **offload),
                       ModelConfig(path=shards("low_noise_model"), **offload),
                       ModelConfig(path=_weights_file(encoders, TEXT_ENCODER_FILE), **offload),
                       ModelConfig(path=_weights_file(encoders, VAE_FILE), **offload)],
        tokenizer_config=ModelConfig(path=str(encoders / TOKENIZER_FOLDER)))
    if pipe.dit is None or pipe.dit2 is None or pipe.vae is None or pipe.text_encoder is None:
        raise RequestError(f"{base} and {encoders} did not give both Wan2.2-Fun experts, the VAE and the text encoder")
    for dit, file in ((pipe.dit, lora["high"]), (pipe.dit2, lora["low"])):
        widen_patch_embedding(dit, file)
        pipe.load_lora(dit, str(file), alpha=1)
    install_normal_unit(pipe)
    return pipe


def widen_patch_embedding(dit: Any, lora_file: Path) -> None:
    """Replace the expert's patch embedding by the wider one stored in the LoRA file."""
    from safetensors.torch import load_file

    state = load_file(str(lora_file))
    if "patch_embedding.weight" not in state:
        raise RequestError(f"{lora_file.name}: no patch_embedding.weight (not an OrbitPainter LoRA file)")
    weight, bias = state["patch_embedding.weight"], state.get("patch_embedding.bias")
    old = dit.patch_embedding
    new = torch.nn.Conv3d(weight.shape[1], old.out_channels, old.kernel_size, old.stride, old.padding,
                          bias=bias is not None)
    new.load_state_dict({"weight": weight, **({"bias": bias} if bias is not None else {})})
    dit.patch_embedding = new.to(device=old.weight.device, dtype=old.weight.dtype)


def install_normal_unit(pipe: Any) -> None:
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


def _pils(frames: np.ndarray) -> list:
    from PIL import Image

    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
    return [Image.fromarray(f) for f in frames]


@torch.no_grad()
def encode(pipe: Any, frames: np.ndarray) -> torch.Tensor:
    """The pipeline's VAE latents (1, C, T, h, w) of frames (N, H, W, 3)."""
    video = pipe.preprocess_video(_pils(frames))
    return pipe.vae.encode(video, device=pipe.device, tiled=True).to(dtype=pipe.torch_dtype, device=pipe.device)


def generate_orbit(pipe: Any, request: dict, arrays: dict[str, np.ndarray], name: str,
                   shared: np.ndarray | None, report: Callable[[float, str], None]) -> np.ndarray:
    """One orbit's frames (N, H, W, 3) float32 in [0, 1], as decoded."""
    position, normal = arrays[f"{name}_position"], arrays[f"{name}_normal"]
    n, h, w = position.shape[:3]
    options = request["options"]
    steps = int(options["steps"])
    init = arrays.get(f"{name}_init")
    regenerate = arrays.get(f"{name}_regenerate", np.ones((n, h, w), dtype=bool)).copy()
    source = np.zeros((n, h, w, 3), np.float32) if init is None else init.astype(np.float32).copy()
    if shared is not None:  # the vertical orbit starts from the horizontal orbit's picture of frame 0
        source[0], regenerate[0] = shared, False
    strength = float(options["strength"])
    start = start_step(steps, strength) if init is not None and strength < 1.0 else 0
    hold = None
    if not regenerate.all():
        src = encode(pipe, source)
        hold = LatentHold(src, latent_mask(regenerate).to(src), seeded_noise(src.shape, int(options["seed"])).to(src))
    pipe.orbitex_normal_unit.normal_video = _pils(normal)
    kwargs: dict[str, Any] = {}
    if start:  # DiffSynth noises the input video to the first timestep of the (shortened) schedule
        kwargs.update(input_video=_pils(source), denoising_strength=1.0)
    planned = steps - start

    def steps_reported(timesteps: Iterable) -> Iterator:
        for i, t in enumerate(timesteps):
            yield t
            report((i + 1) / planned, f"orbitpainter: {name} orbit, step {i + 1} of {planned}")

    with scheduler_swapped(pipe, held_scheduler(pipe.scheduler, start, hold)):
        video = pipe(prompt=options["prompt"], negative_prompt=options["negative_prompt"],
                     reference_image=_pils(arrays["reference"][None])[0], control_video=_pils(position),
                     num_frames=n, height=h, width=w, seed=int(options["seed"]), tiled=True,
                     cfg_scale=float(options["cfg"]), num_inference_steps=steps, sigma_shift=SIGMA_SHIFT,
                     switch_DiT_boundary=SWITCH_BOUNDARY, progress_bar_cmd=steps_reported, **kwargs)
    return from_pil(video)


def serve(requests: IO[str], out: IO[str]) -> None:
    """Answer requests until stdin closes: each line names a request folder. The pipeline stays
    loaded between requests that use the same models (the 14B experts take minutes to load)."""
    cache: dict[str, Any] = {}

    def send(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    for line in requests:
        folder = Path(json.loads(line)["folder"])
        request = json.loads((folder / "request.json").read_text())
        with np.load(folder / "request.npz") as data:
            arrays = {k: data[k] for k in data.files}
        orbits = request["orbits"]
        try:
            key = json.dumps([request["models"], request["device"]], sort_keys=True)
            if key not in cache:
                send({"progress": 0.0, "stage": "orbitpainter: loading Wan2.2-Fun-A14B-Control + LoRAs"})
                cache.clear()  # one pipeline in memory at a time
                models = request["models"]
                cache[key] = load_pipeline(Path(models["base"]), Path(models["encoders"]),
                                           {k: Path(v) for k, v in models["lora"].items()}, request["device"])
            frames: dict[str, np.ndarray] = {}
            for k, name in enumerate(orbits):
                def report(fraction: float, stage: str, k: int = k) -> None:
                    send({"progress": 0.05 + 0.95 * (k + min(fraction, 1.0)) / len(orbits), "stage": stage})

                shared = frames["horizontal"][0] if name == "vertical" and "horizontal" in frames else None
                frames[name] = generate_orbit(cache[key], request, arrays, name, shared, report)
        except (RequestError, OrbitexError) as exc:
            send({"error": str(exc)})
            continue
        np.savez(folder / "result.npz", **frames)
        send({"progress": 1.0, "stage": "orbitpainter: done", "done": True})


if __name__ == "__main__":
    serve(sys.stdin, os.fdopen(int(sys.argv[1]), "w", buffering=1))
