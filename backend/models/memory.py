"""Memory checks before a model is loaded: say clearly that it will not fit instead of crashing.

The need is estimated from the weight files actually installed (bytes in the compute dtype) plus
the activations of the requested video (latent tokens x hidden width x layers kept alive), so a
tiny test model passes on a CPU and a 14B model is refused there unless forced.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import OrbitexError
from .registry import weights_bytes

GiB = 1024 ** 3
# Above this much weight data a CPU run takes hours: refused unless forced (env overrides).
CPU_LIMIT_GB_DEFAULT = 4.0


class InsufficientMemoryError(OrbitexError):
    """A model would not fit (or would be unreasonably slow) on the chosen device."""


def cpu_limit_bytes() -> float:
    return float(os.environ.get("ORBITEX_CPU_MODEL_LIMIT_GB", CPU_LIMIT_GB_DEFAULT)) * GiB


def estimate_need(folder: Path, frames: int, size: int, dtype_bytes: int = 2, stored_bytes: int = 4) -> int:
    """Bytes a video model needs to run: its weights in the compute dtype (files may be stored in
    fp32; never less than half of what is stored) plus activations: latent tokens (frames/4 x
    size/16 x size/16 after patching) x the transformer's width x about 40 live tensors (attention,
    MLP, the VAE's decoder)."""
    stored = weights_bytes(folder)
    weights = stored * max(dtype_bytes / stored_bytes, 0.5)
    tokens = ((frames - 1) // 4 + 1) * (size // 16) ** 2
    return int(weights * 1.1 + tokens * transformer_width(folder) * dtype_bytes * 40)


def transformer_width(folder: Path, default: int = 5120) -> int:
    """Hidden width of the model's transformer from its config (diffusers layout), else `default`."""
    import json

    for config in (folder / "transformer" / "config.json", folder / "config.json"):
        try:
            data = json.loads(config.read_text())
            return int(data["num_attention_heads"]) * int(data["attention_head_dim"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return default


def available_cpu_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def free_gpu_bytes(device: str) -> tuple[int, int]:
    import torch

    free, total = torch.cuda.mem_get_info(torch.device(device))
    return int(free), int(total)


def check_memory(model: str, need: int, device: str, force_cpu: bool = False,
                 free_bytes: int | None = None) -> None:
    """Raise InsufficientMemoryError when `need` bytes will not fit on `device` (or, on the CPU,
    when the model is large and `force_cpu` is not set). `free_bytes` overrides the measurement."""
    gb = need / GiB
    if device.startswith("cuda"):
        free, total = free_gpu_bytes(device) if free_bytes is None else (free_bytes, free_bytes)
        if need > free:
            raise InsufficientMemoryError(
                f"model '{model}' needs about {gb:.1f} GiB of GPU memory at this size, but {device} has "
                f"{free / GiB:.1f} GiB free (of {total / GiB:.1f} GiB): free the GPU, lower --frames/--size, "
                "or use a smaller model")
        return
    if need > cpu_limit_bytes() and not force_cpu:
        raise InsufficientMemoryError(
            f"model '{model}' (about {gb:.1f} GiB to run) would take hours on the CPU and no CUDA GPU is "
            "available: run on a GPU machine (a remote backend), use --generator projection, or pass "
            "--force-cpu to run it anyway")
    free = available_cpu_bytes() if free_bytes is None else free_bytes
    if need > free:
        raise InsufficientMemoryError(
            f"model '{model}' needs about {gb:.1f} GiB of memory, but only {free / GiB:.1f} GiB is available")
