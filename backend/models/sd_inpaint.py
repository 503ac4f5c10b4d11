"""Stable Diffusion inpainting with a subject LoRA: the `sd-inpaint` inpainter of refine (TIRE).

Inpainting: diffusers' StableDiffusionInpaintPipeline at `strength` (30 % denoising by default:
the frame, its prior colours warped in, is noised to that point of the schedule and denoised from
there). After every scheduler step TIRE's masked latent update x <- m * x_gen + (1 - m) * x_src,
with x_src the frame's own latents noised to the next step's level (what diffusers itself does for
4-channel UNets; the 9-channel inpainting UNet only gets the mask as conditioning), applied by the
held-latent copy of the pipeline's scheduler swapped in for the call (backend/models/held.py). The latent mask is the pixel mask max-pooled to latent resolution, so every
latent touching a repainted pixel is free. The decoded frame is composited over the input: pixels
outside the mask come back exactly as given.

Subject identity: a DreamBooth-style LoRA (peft, rank 4 on the UNet's attention projections)
trained on the subject photos with the instance prompt "a photo of sks subject", the inpainting
objective (random masks, masked-image latents as the UNet's extra channels). Training checkpoints
its state every `checkpoint_every` steps and resumes from the last checkpoint when re-run; the
finished LoRA is cached under a key of the images and settings, so a second run does not retrain.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError, OrbitexError
from .inpaint import check_inputs

DEFAULT_MODEL = "sd-inpaint"
DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = 7.5
INSTANCE_PROMPT = "a photo of sks subject"
NEGATIVE_PROMPT = "blurry, low quality, distorted, text, watermark"
LORA_FILE = "pytorch_lora_weights.safetensors"
LORA_META = "lora.json"
CHECKPOINT = "checkpoint.pt"
LORA_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")
CACHE_VERSION = 1  # bump when the training recipe changes, so old cached LoRAs are not reused


def require_weights(model: str = DEFAULT_MODEL) -> None:
    """MissingWeightsError naming `model`, its size and the download command when it is not installed."""
    from .registry import get_spec, resolve

    if get_spec(model).kind != "diffusers-sd-inpaint":
        raise InputError(f"model {model!r} is not a Stable Diffusion inpainting model; use sd-inpaint")
    resolve(model)


def lora_cache_dir() -> Path:
    """Where subject LoRAs are cached: $ORBITEX_CACHE_DIR/lora, else $XDG_CACHE_HOME/orbitex/lora
    (~/.cache/orbitex/lora)."""
    if os.environ.get("ORBITEX_CACHE_DIR"):
        return Path(os.environ["ORBITEX_CACHE_DIR"]).expanduser() / "lora"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "orbitex" / "lora"


def _device(device: str) -> str:
    from .generators import pick_device

    return pick_device(device)


def load_sd_pipeline(pipeline_class: str, model: str, device: str) -> Any:
    """diffusers' `pipeline_class` (a Stable Diffusion pipeline's name) from the installed model folder,
    on `device`; the safety checker is not loaded (Orbitex paints textures, it does not publish images)."""
    import diffusers
    import torch

    from .registry import resolve

    folder = resolve(model)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        pipe = getattr(diffusers, pipeline_class).from_pretrained(
            str(folder), dtype=dtype, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"the Stable Diffusion model in {folder} cannot be loaded ({type(exc).__name__}: {exc}); "
                         "check it with: python -m backend models verify") from None
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def held_latents(pipe: Any, image: np.ndarray, free: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, Any]:
    """What a Stable Diffusion pipeline needs to repaint only the `free` pixels of `image` (H, W, 3):
    the image and mask padded to sides divisible by 8 (edge colours, held; crop the result back),
    and the LatentHold of the image's own VAE latents outside the mask max-pooled to latent blocks."""
    import torch

    from .held import LatentHold, seeded_noise

    h, w = free.shape
    ph, pw = -h % 8, -w % 8
    padded = np.pad(np.clip(image, 0.0, 1.0).astype(np.float32), ((0, ph), (0, pw), (0, 0)), mode="edge")
    padded_free = np.pad(free, ((0, ph), (0, pw)))
    pixels = pipe.image_processor.preprocess(padded[None], height=h + ph, width=w + pw)
    with torch.no_grad():
        latents = pipe.vae.encode(pixels.to(pipe.device, pipe.vae.dtype)).latent_dist.mode()
    source = latents * pipe.vae.config.scaling_factor
    regenerate = torch.nn.functional.max_pool2d(torch.from_numpy(padded_free.astype(np.float32))[None, None],
                                                pipe.vae_scale_factor).to(source)
    return padded, padded_free, LatentHold(source, regenerate, seeded_noise(source.shape, seed).to(source))


class SDInpainter:
    """The Inpainter protocol (backend.models.inpaint) on Stable Diffusion inpainting."""

    name = "sd-inpaint"

    def __init__(self, model: str = DEFAULT_MODEL, strength: float = 0.3, lora: Path | None = None, seed: int = 0,
                 steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE, device: str = "auto") -> None:
        if not 0.0 < strength <= 1.0:
            raise InputError(f"strength must be in (0, 1], got {strength}")
        if steps < 1 or int(steps * strength) < 1:
            raise InputError(f"{steps} steps at strength {strength} leave no denoising step; raise one of them")
        self.model, self.strength, self.seed, self.steps, self.guidance = model, strength, seed, steps, guidance
        self.device = _device(device)
        self.lora = Path(lora) if lora is not None else None
        self.instance_prompt = ""
        if self.lora is not None:
            meta = self.lora / LORA_META
            if not (self.lora / LORA_FILE).is_file() or not meta.is_file():
                raise InputError(f"{self.lora}: not a subject LoRA folder ({LORA_FILE} and {LORA_META} expected)")
            self.instance_prompt = json.loads(meta.read_text())["instance_prompt"]
        self._pipe: Any = None
        self.calls: list[dict[str, Any]] = []  # per inpaint call: steps run, masked fraction (reports, tests)

    @property
    def pipe(self) -> Any:
        if self._pipe is None:
            pipe = load_sd_pipeline("StableDiffusionInpaintPipeline", self.model, self.device)
            if self.lora is not None:
                pipe.load_lora_weights(str(self.lora), weight_name=LORA_FILE, adapter_name="subject")
            self._pipe = pipe
        return self._pipe

    def prompt_for(self, prompt: str) -> str:
        return ", ".join(p for p in (self.instance_prompt, prompt.strip()) if p)

    def inpaint(self, image: np.ndarray, mask: np.ndarray, prompt: str = "",
                progress: Callable[[float], None] | None = None) -> np.ndarray:
        check_inputs(image, mask)
        out = np.array(image, dtype=np.float32, copy=True)
        if not mask.any():
            if progress is not None:
                progress(1.0)
            return out
        painted = self.generate(out, mask, prompt, progress)
        out[mask] = painted[mask]
        return out

    def generate(self, image: np.ndarray, mask: np.ndarray, prompt: str = "",
                 progress: Callable[[float], None] | None = None, output_type: str = "np") -> Any:
        """The frame before compositing: (H, W, 3) float32, or with output_type "latent" the final
        latents (1, C, H/f, W/f) of the padded frame, which outside the latent mask are the input's own."""
        import torch

        from .held import held_scheduler, scheduler_swapped

        check_inputs(image, mask)
        pipe = self.pipe
        h, w = mask.shape
        padded, padded_mask, hold = held_latents(pipe, image, mask, self.seed)
        record = {"steps": 0, "masked_fraction": float(mask.mean())}
        self.calls.append(record)

        def counted(p: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            record["steps"] = i + 1
            if progress is not None:
                progress((i + 1) / p.num_timesteps)
            return tensors

        # the pipeline truncates the schedule to `strength` itself
        with scheduler_swapped(pipe, held_scheduler(pipe.scheduler, 0, hold)):
            result = pipe(prompt=self.prompt_for(prompt), negative_prompt=NEGATIVE_PROMPT, image=padded[None],
                          mask_image=padded_mask[None, :, :, None].astype(np.float32),
                          height=padded.shape[0], width=padded.shape[1],
                          strength=self.strength, num_inference_steps=self.steps, guidance_scale=self.guidance,
                          generator=torch.Generator("cpu").manual_seed(self.seed), output_type=output_type,
                          callback_on_step_end=counted)
        if output_type == "latent":
            return result.images
        return np.asarray(result.images[0][:h, :w], dtype=np.float32)


# ----------------------------------------------------------------------------- subject LoRA

def _subject_pixels(images: list[np.ndarray], resolution: int) -> np.ndarray:
    """(N, resolution, resolution, 3) float32 in [0, 1]: each photo centre-cropped to a square and resized."""
    import cv2

    if not images:
        raise InputError("training the subject LoRA needs at least one subject image")
    out = []
    for k, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 8:
            raise InputError(f"subject image {k} is {image.shape}; an (H, W, 3) photo of at least 8x8 is needed")
        rgb = np.clip(image[..., :3].astype(np.float32), 0.0, 1.0)
        side = min(rgb.shape[:2])
        y0, x0 = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
        square = rgb[y0:y0 + side, x0:x0 + side]
        interp = cv2.INTER_AREA if side > resolution else cv2.INTER_CUBIC
        out.append(np.clip(cv2.resize(square, (resolution, resolution), interpolation=interp), 0.0, 1.0))
    return np.stack(out).astype(np.float32)


def lora_key(pixels: np.ndarray, model: str, settings: dict[str, Any]) -> str:
    """Cache key of a subject LoRA: the (resized, 8-bit) subject images, the model and every training setting."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": CACHE_VERSION, "model": model, **settings}, sort_keys=True).encode())
    for image in pixels:
        digest.update(str(image.shape).encode())
        digest.update((image * 255 + 0.5).astype(np.uint8).tobytes())
    return digest.hexdigest()[:20]


def _random_mask(size: int, generator: Any) -> Any:
    """(1, 1, size, size) float mask, 1 = repaint: the whole image one time in four (the subject from
    nothing), otherwise one to three random rectangles."""
    import torch

    mask = torch.zeros(1, 1, size, size)
    if torch.rand((), generator=generator) < 0.25:
        return mask + 1.0
    count = int(torch.randint(1, 4, (), generator=generator))
    for _ in range(count):
        hw = (torch.rand(2, generator=generator) * 0.6 + 0.2) * size
        y0, x0 = (torch.rand(2, generator=generator) * (size - hw)).long().tolist()
        mask[..., y0:y0 + int(hw[0]), x0:x0 + int(hw[1])] = 1.0
    return mask


def train_subject_lora(subject_images: list[np.ndarray], model: str, cache_dir: Path, steps: int = 500,
                       rank: int = 4, lr: float = 1e-4, progress: Callable[[float], None] | None = None,
                       checkpoint_every: int = 50, resolution: int | None = None, seed: int = 0,
                       device: str = "auto") -> Path:
    """Train (or find in `cache_dir`) a DreamBooth-style LoRA of the subject for `model`; returns the
    LoRA folder (LORA_FILE in diffusers' format + LORA_META). `resolution` defaults to the UNet's
    native size. Interrupted training (an exception, e.g. a cancelled job, or a killed process)
    resumes from its last checkpoint on the next call with the same images and settings."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import AutoTokenizer, CLIPTextModel

    from .registry import resolve

    if steps < 1 or rank < 1 or not lr > 0 or checkpoint_every < 1:
        raise InputError("LoRA training needs steps, rank and checkpoint_every >= 1 and a positive learning rate")
    folder = resolve(model)
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    vae_factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    resolution = resolution or int(unet_config["sample_size"]) * vae_factor
    if resolution % 8:
        raise InputError(f"the LoRA training resolution must be divisible by 8, not {resolution}")
    pixels = _subject_pixels(subject_images, resolution)
    settings = {"steps": steps, "rank": rank, "lr": lr, "resolution": resolution, "seed": seed,
                "instance_prompt": INSTANCE_PROMPT, "weights": str(folder)}  # a Hub snapshot folder names its commit
    out = Path(cache_dir) / lora_key(pixels, model, settings)
    if (out / LORA_FILE).is_file() and (out / LORA_META).is_file():
        if progress is not None:
            progress(1.0)
        return out
    out.mkdir(parents=True, exist_ok=True)

    dev = _device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
        text_encoder = CLIPTextModel.from_pretrained(str(folder / "text_encoder"))
        vae = AutoencoderKL.from_pretrained(str(folder / "vae"))
        unet = UNet2DConditionModel.from_pretrained(str(folder / "unet"))
        scheduler = DDPMScheduler.from_pretrained(str(folder / "scheduler"))
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"the SD inpainting model in {folder} cannot be loaded for LoRA training "
                         f"({type(exc).__name__}: {exc}); check it with: python -m backend models verify") from None
    for module in (text_encoder, vae, unet):
        module.requires_grad_(False)
        module.to(dev)
    with torch.random.fork_rng(devices=[]):  # the LoRA's initial A matrices follow `seed`, not the global RNG
        torch.manual_seed(seed)
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                    target_modules=list(LORA_TARGETS)))
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    generator = torch.Generator("cpu").manual_seed(seed)
    ids = tokenizer(INSTANCE_PROMPT, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        text = text_encoder(ids.to(dev))[0]
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2) * 2.0 - 1.0  # (N, 3, R, R) in [-1, 1]
    scaling, latent_side = vae.config.scaling_factor, resolution // vae_factor
    nine = unet.config.in_channels == 9
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.startswith("cuda") else torch.autocast("cpu", enabled=False)

    start, losses, resumed_from = 0, [], None
    checkpoint = out / CHECKPOINT
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        set_peft_model_state_dict(unet, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start, losses, resumed_from = int(state["step"]), list(state["losses"]), int(state["step"])

    unet.train()
    for step in range(start, steps):
        k = int(torch.randint(len(images), (), generator=generator))
        x = images[k:k + 1]
        if torch.rand((), generator=generator) < 0.5:
            x = x.flip(-1)
        mask = _random_mask(resolution, generator)
        noise = torch.randn(1, unet.config.out_channels, latent_side, latent_side, generator=generator)
        t = torch.randint(scheduler.config.num_train_timesteps, (1,), generator=generator)
        x, mask, noise, t = x.to(dev), mask.to(dev), noise.to(dev), t.to(dev)
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.mode() * scaling
            noisy = scheduler.add_noise(latents, noise, t)
            if nine:  # the inpainting UNet's extra channels: the mask and the masked image's latents
                masked = vae.encode(x * (mask < 0.5)).latent_dist.mode() * scaling
                small = torch.nn.functional.interpolate(mask, size=(latent_side, latent_side))
                noisy = torch.cat([noisy, small, masked], 1)
        target = noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, t)
        with autocast:
            pred = unet(noisy, t, encoder_hidden_states=text).sample
        loss = torch.nn.functional.mse_loss(pred.float(), target.float())
        if not torch.isfinite(loss):
            raise OrbitexError(f"LoRA training diverged at step {step + 1} (loss {loss.item()}); lower the learning rate")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.item()))
        done = step + 1
        if done % checkpoint_every == 0 and done < steps:
            state = {"lora": {k: v.detach().cpu() for k, v in get_peft_model_state_dict(unet).items()},
                     "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                     "step": done, "losses": losses}
            tmp = checkpoint.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, checkpoint)  # atomic: a kill mid-write leaves the previous checkpoint
        if progress is not None:
            progress(done / steps)

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionInpaintPipeline.save_lora_weights(str(out), unet_lora_layers=layers, weight_name=LORA_FILE,
                                                     safe_serialization=True)
    meta = {"instance_prompt": INSTANCE_PROMPT, "model": model, "images": len(pixels), **settings,
            "losses": losses, "resumed_from": resumed_from}
    (out / LORA_META).write_text(json.dumps(meta, indent=1) + "\n")
    checkpoint.unlink(missing_ok=True)
    return out
