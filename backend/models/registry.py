"""Model weights: which models Orbitex knows, where their files are, how to install and check them.

A model is found, in this order:
  1. a folder named for it in the config file (`[models."NAME"] path = "..."`),
  2. `<models_dir>/NAME/` (models_dir from $ORBITEX_MODELS_DIR or the config file),
  3. the Hugging Face Hub cache at the model's revision (never downloads while resolving).
`download` fills the Hub cache (honouring HF_HUB_OFFLINE); the commit it got is written to a lock
file beside the config, so later runs load exactly that commit even when the spec names a branch.

Config file: $ORBITEX_MODELS_CONFIG, else $XDG_CONFIG_HOME/orbitex/models.toml (~/.config/...):

    models_dir = "/data/orbitex-models"
    [models."wan2.1-vace-1.3b"]
    path = "/data/Wan2.1-VACE-1.3B-diffusers"     # a local folder (skips the Hub)
    revision = "0123abcd..."                        # or another Hub commit

This module stays importable without torch (the `models list` verb and the HTTP process use it).
"""
from __future__ import annotations

import fnmatch
import json
import os
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any
from pathlib import Path

from ..errors import InputError, MissingWeightsError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")
INSTALL_HINT = "python -m backend models download {name}"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # what loads it: "diffusers-wan-vace", "diffusers-wan-i2v", "diffsynth-wan-fun", "lora-files",
    # "trellis-sparse-structure", "direct3d-s2-dense", "diffusers-sd-inpaint", "diffusers-sd", "cotracker3"
    description: str
    repo_id: str | None  # Hugging Face repository; None = a local folder only (see `install`)
    revision: str = "main"  # a commit hash pins it; a branch is pinned at download time (lock file)
    size_gb: float = 0.0  # download size (about); 0 = not known here
    allow_patterns: tuple[str, ...] | None = None  # the files of the repository this model uses
    required: tuple[str, ...] = ()  # glob patterns that must match a file in the folder
    requires: tuple[str, ...] = ()  # other models it needs installed too
    install: str = ""  # how to install when there is no Hub repository to download from
    extra: dict = field(default_factory=dict)  # loader settings (e.g. file names inside the folder)

    def install_command(self) -> str:
        return self.install or INSTALL_HINT.format(name=self.name)


# The files of a Stable Diffusion 1.5 checkpoint in diffusers' layout that Orbitex loads (both SD models).
_SD_FILES: dict[str, Any] = dict(
    allow_patterns=("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                    "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                    "text_encoder/model.safetensors", "tokenizer/*", "scheduler/*"),
    required=("model_index.json", "unet/*.safetensors", "vae/*.safetensors", "text_encoder/*.safetensors",
              "tokenizer/*", "scheduler/*"),
    extra={"unused_components": ("safety_checker", "feature_extractor")},  # named in model_index.json, not loaded
)

# Sizes are the repositories' published totals (rounded). Revisions: these name branches because
# this build machine cannot reach the Hub to read commit ids; `models download` pins the commit it
# fetched in the lock file, and the config file may pin any commit explicitly.
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec(
        "wan2.1-vace-1.3b", "diffusers-wan-vace",
        "Wan2.1 VACE 1.3B (diffusers): control video + reference image to video, 480p class",
        "Wan-AI/Wan2.1-VACE-1.3B-diffusers", size_gb=17.5,
        required=("model_index.json", "transformer/*", "vae/*", "text_encoder/*", "tokenizer/*", "scheduler/*"),
    ),
    ModelSpec(
        "wan2.1-vace-14b", "diffusers-wan-vace",
        "Wan2.1 VACE 14B (diffusers): higher quality, 720p class; needs an 80 GB GPU or offloading",
        "Wan-AI/Wan2.1-VACE-14B-diffusers", size_gb=75.0,
        required=("model_index.json", "transformer/*", "vae/*", "text_encoder/*", "tokenizer/*", "scheduler/*"),
    ),
    ModelSpec(
        "wan2.1-i2v-14b-480p", "diffusers-wan-i2v",
        "Wan2.1 image-to-video 14B 480p (diffusers): orbit videos from one image (reconstruct)",
        "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", size_gb=82.0,
        required=("model_index.json", "transformer/*", "vae/*", "text_encoder/*", "image_encoder/*"),
    ),
    ModelSpec(
        "sd-inpaint", "diffusers-sd-inpaint",
        "Stable Diffusion 1.5 inpainting (diffusers): refine's sd-inpaint inpainter and its subject LoRA",
        "stable-diffusion-v1-5/stable-diffusion-inpainting", size_gb=4.3,
        **_SD_FILES,
    ),
    ModelSpec(
        "sd-v1-5", "diffusers-sd",
        "Stable Diffusion 1.5 (diffusers): refine's mv-sd multi-view consistency stage (img2img over a grid of views)",
        "stable-diffusion-v1-5/stable-diffusion-v1-5", size_gb=4.3,
        **_SD_FILES,
    ),
    ModelSpec(
        "cotracker3-offline", "cotracker3",
        "CoTracker3 offline point tracker (refine --tracker cotracker); its model code is the cotracker "
        "package of facebookresearch/co-tracker, which has no PyPI release",
        "facebook/cotracker3", size_gb=0.1,
        allow_patterns=("scaled_offline.pth",), required=("scaled_offline.pth",),
    ),
    ModelSpec(
        "wan2.2-fun-a14b-control", "diffsynth-wan-fun",
        "Wan2.2-Fun A14B Control (high- and low-noise experts), the base model of OrbitPainter",
        "alibaba-pai/Wan2.2-Fun-A14B-Control", size_gb=64.0,
        allow_patterns=("high_noise_model/*", "low_noise_model/*", "*.json", "*.md"),
        required=("high_noise_model/*.safetensors", "low_noise_model/*.safetensors"),
    ),
    ModelSpec(
        "wan2.1-t2v-1.3b-encoders", "diffsynth-wan-fun",
        "UMT5-XXL text encoder, Wan2.1 VAE and tokenizer as DiffSynth loads them for Wan2.2-Fun",
        "Wan-AI/Wan2.1-T2V-1.3B", size_gb=11.8,
        allow_patterns=("models_t5_umt5-xxl-enc-bf16.pth", "Wan2.1_VAE.pth", "google/*"),
        # .pth as published, or DiffSynth's .safetensors conversions of the same files
        required=("models_t5_umt5-xxl-enc-bf16.*", "Wan2.1_VAE.*", "google/umt5-xxl/*"),
    ),
    ModelSpec(
        "orbitpainter", "lora-files",
        "Ink3D OrbitPainter LoRAs (high-noise and low-noise experts, with their patch embeddings) "
        "for Wan2.2-Fun-A14B-Control",
        None, size_gb=1.2,
        allow_patterns=("*.safetensors", "*.json", "*.md"),
        required=("high_noise*.safetensors", "low_noise*.safetensors"),
        requires=("wan2.2-fun-a14b-control", "wan2.1-t2v-1.3b-encoders"),
        install=("name the Hub repository Ink3D publishes the two OrbitPainter LoRA files in, in the models config "
                 "([models.\"orbitpainter\"] repo_id = \"OWNER/NAME\"), then run: python -m backend models download "
                 "orbitpainter; or put the files (names starting high_noise / low_noise, .safetensors) in a folder "
                 "and name it there: [models.\"orbitpainter\"] path = \"/path/to/folder\" "
                 "(or put them in <models_dir>/orbitpainter/)"),
    ),
    # 3D latent priors of the complete pipeline (complete/latent_priors.py); each also needs its own
    # package, which needs a CUDA GPU. Only some files of each repository are used (sizes not listed).
    ModelSpec(
        "trellis-image-large", "trellis-sparse-structure",
        "TRELLIS image-large, sparse-structure stage (occupancy VAE + flow DiT) for guided completion",
        "microsoft/TRELLIS-image-large",
        allow_patterns=("ckpts/ss_*", "pipeline.json"),
        required=tuple(f"ckpts/{c}.{x}" for c in ("ss_enc_conv3d_16l8_fp16", "ss_dec_conv3d_16l8_fp16",
                                                   "ss_flow_img_dit_L_16l8_fp16") for x in ("json", "safetensors")),
    ),
    ModelSpec(
        "direct3d-s2", "direct3d-s2-dense",
        "Direct3D-S2 v1.1 dense stage (shape VAE + DiT) for guided completion",
        "wushuang98/Direct3D-S2",
        allow_patterns=("direct3d-s2-v-1-1/config.yaml", "direct3d-s2-v-1-1/model_dense.ckpt"),
        required=("direct3d-s2-v-1-1/config.yaml", "direct3d-s2-v-1-1/model_dense.ckpt"),
    ),
)}


# ----------------------------------------------------------------------------- configuration

def config_path() -> Path:
    if os.environ.get("ORBITEX_MODELS_CONFIG"):
        return Path(os.environ["ORBITEX_MODELS_CONFIG"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "orbitex" / "models.toml"


def load_config() -> dict:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: the models config is not valid TOML ({exc})") from None


def models_dir(config: dict | None = None) -> Path | None:
    config = load_config() if config is None else config
    value = os.environ.get("ORBITEX_MODELS_DIR") or config.get("models_dir")
    return Path(value).expanduser() if value else None


def _lock_path() -> Path:
    return config_path().with_name("models.lock.json")


def _read_lock() -> dict[str, str]:
    try:
        return json.loads(_lock_path().read_text())
    except (OSError, ValueError):
        return {}


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def get_spec(name: str) -> ModelSpec:
    """The spec of `name`, with the config file's and lock file's revision applied."""
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    spec = MODELS[name]
    entry = load_config().get("models", {}).get(name, {})
    revision = entry.get("revision") or _read_lock().get(name) or spec.revision
    return replace(spec, revision=revision, repo_id=entry.get("repo_id") or spec.repo_id)


# ----------------------------------------------------------------------------- finding files

@dataclass(frozen=True)
class Located:
    spec: ModelSpec
    path: Path
    source: str  # "config", "models_dir" or "hub-cache"


def _missing_patterns(spec: ModelSpec, folder: Path) -> list[str]:
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()]
    return [pat for pat in spec.required if not any(fnmatch.fnmatch(f, pat) for f in files)]


def locate(name: str) -> Located | None:
    """Where `name`'s files are, or None when it is not installed. Never touches the network."""
    spec = get_spec(name)
    config = load_config()
    entry = config.get("models", {}).get(name, {})
    candidates: list[tuple[Path, str]] = []
    if entry.get("path"):
        candidates.append((Path(entry["path"]).expanduser(), "config"))
    root = models_dir(config)
    if root is not None:
        candidates.append((root / name, "models_dir"))
    for folder, source in candidates:
        if folder.is_dir() and not _missing_patterns(spec, folder):
            return Located(spec, folder, source)
    if spec.repo_id is not None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            folder = Path(snapshot_download(spec.repo_id, revision=spec.revision, local_files_only=True,
                                            allow_patterns=list(spec.allow_patterns) if spec.allow_patterns else None))
        except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
            return None
        if folder.is_dir() and not _missing_patterns(spec, folder):
            return Located(spec, folder, "hub-cache")
    return None


def missing_message(spec: ModelSpec) -> str:
    where = f"Hugging Face repository {spec.repo_id} @ {spec.revision}" if spec.repo_id else "no Hub repository"
    return (f"model '{spec.name}' is not installed ({spec.description}; {size_text(spec)}, {where}). "
            f"Install it with: {spec.install_command()}")


def size_text(spec: ModelSpec) -> str:
    return f"about {spec.size_gb:g} GB" if spec.size_gb else "size not listed"


def resolve(name: str) -> Path:
    """The folder of an installed model; MissingWeightsError naming it, its size and the install
    command otherwise. Models it requires are checked too (each named in the error)."""
    problems = []
    located = None
    for needed in (name, *get_spec(name).requires):
        found = locate(needed)
        if found is None:
            problems.append(missing_message(get_spec(needed)))
        elif needed == name:
            located = found
    if problems:
        raise MissingWeightsError(" ".join(problems))
    assert located is not None
    return located.path


def require(names: list[str]) -> dict[str, Path]:
    """Resolve several models at once, reporting every missing one in a single error."""
    problems, paths = [], {}
    for name in names:
        try:
            paths[name] = resolve(name)
        except MissingWeightsError as exc:
            problems.append(str(exc))
    if problems:
        raise MissingWeightsError(" ".join(dict.fromkeys(problems)))
    return paths


# ----------------------------------------------------------------------------- install and check

def download(name: str, progress: bool = True) -> Path:
    """Fetch `name` (and what it requires) into the Hub cache; record the commit in the lock file."""
    spec = get_spec(name)
    for needed in spec.requires:
        if locate(needed) is None:
            download(needed, progress)
    found = locate(name)
    if found is not None and found.source != "hub-cache":
        return found.path
    if spec.repo_id is None:
        raise MissingWeightsError(f"model '{name}' cannot be downloaded (no public Hub repository is known): "
                                  f"{spec.install_command()}")
    if hub_offline():
        if found is not None:
            return found.path
        raise MissingWeightsError(f"HF_HUB_OFFLINE is set, so '{name}' ({size_text(spec)} from "
                                  f"{spec.repo_id}) cannot be downloaded; unset it or copy the files into "
                                  f"{(models_dir() or Path('<models_dir>')) / name}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        folder = Path(snapshot_download(spec.repo_id, revision=spec.revision,
                                        allow_patterns=list(spec.allow_patterns) if spec.allow_patterns else None))
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise MissingWeightsError(f"downloading '{name}' from {spec.repo_id} failed: {exc}") from None
    commit = folder.name  # the Hub cache names snapshot folders by commit
    lock = _read_lock()
    if lock.get(name) != commit:
        lock[name] = commit
        _lock_path().parent.mkdir(parents=True, exist_ok=True)
        _lock_path().write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return folder


def verify(name: str) -> list[str]:
    """Problems with an installed model's files (empty list = fine). Checks required files, that
    every safetensors file parses to its header and has the byte length the header promises, and
    that a diffusers folder has every component its model_index.json names. With network access
    and a Hub-cache install, also the Hub's checksums."""
    found = locate(name)
    if found is None:
        return [missing_message(get_spec(name))]
    problems = [f"{name}: no file matches {pat}" for pat in _missing_patterns(found.spec, found.path)]
    for file in sorted(found.path.rglob("*.safetensors")):
        problem = _check_safetensors(file)
        if problem:
            problems.append(f"{name}: {file.relative_to(found.path)}: {problem}")
    index = found.path / "model_index.json"
    if index.is_file():
        try:
            components = json.loads(index.read_text())
        except ValueError:
            problems.append(f"{name}: model_index.json is not valid JSON")
            components = {}
        unused = set(found.spec.extra.get("unused_components", ()))
        for key, value in components.items():
            if not key.startswith("_") and key not in unused and isinstance(value, list) and value[0] is not None:
                if not (found.path / key).is_dir():
                    problems.append(f"{name}: component folder {key}/ named in model_index.json is missing")
    if found.source == "hub-cache" and not hub_offline() and not problems:
        try:
            from huggingface_hub import verify_repo_checksums

            result = verify_repo_checksums(found.spec.repo_id, revision=found.path.name)
            bad = [str(getattr(m, "path", m)) for m in getattr(result, "mismatches", [])]
            problems += [f"{name}: {p}: checksum differs from the Hub" for p in bad]
        except Exception as exc:  # offline in practice; the local checks above still stand
            problems.append(f"{name}: could not compare checksums with the Hub ({type(exc).__name__}); "
                            "local checks passed")
    return problems


def _check_safetensors(file: Path) -> str | None:
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if header_len <= 0 or header_len > min(size - 8, 100_000_000):
                return "not a safetensors file (bad header length)"
            header = json.loads(f.read(header_len))
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc})"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end != size:
        return f"truncated or padded: {size} bytes, header promises {8 + header_len + end}"
    return None


def weights_bytes(folder: Path) -> int:
    """Bytes of weight files under `folder` (symlinks in the Hub cache followed)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.exists())


def status_rows() -> list[dict[str, str]]:
    """One row per known model for `models list`."""
    rows = []
    for name in MODELS:
        spec = get_spec(name)
        found = locate(name)
        rows.append({"name": name, "size": size_text(spec),
                     "state": f"installed ({found.source}: {found.path})" if found else "missing",
                     "source": f"{spec.repo_id}@{spec.revision}" if spec.repo_id else "no Hub repository known (repo_id or path in the models config)",
                     "description": spec.description})
    return rows
