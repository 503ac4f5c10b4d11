"""OrbitPainter (Ink3D): its LoRAs on Wan2.2-Fun-A14B-Control, run through DiffSynth in its own
interpreter.

DiffSynth needs torchvision, which does not install beside the backend's torch, so it lives in a
third environment (.venv/diffsynth, made by `build.py setup`; elsewhere name it with
$ORBITEX_DIFFSYNTH_PYTHON). This side prepares the inputs (position and normal control videos in
Ink3D's encoding, the reference on black, init frames and masks), starts
`python -m backend.models.orbitpainter_run` there, forwards its per-step progress and kills it
when the job is cancelled (the Progress call raises inside the denoising loop's report). The
frames come back as decoded; callers that need masked pixels exactly composite (types.composite).
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Sequence

import numpy as np

from ..assets.mesh import Mesh
from ..errors import OrbitexError
from ..progress import Progress
from ..render.conditioning import encode_normals, encode_positions
from .generators import check_model_memory, pick_device
from .types import GenerateOptions, Orbit, Reference, validate_modes
from .held import start_step
from .wan_common import check_shape, square_reference

STEPS = 50
CFG = 6.0
NEGATIVE_PROMPT = "blurry, low quality, distorted, text, watermark, background clutter, static"
BASE, ENCODERS, LORA = "wan2.2-fun-a14b-control", "wan2.1-t2v-1.3b-encoders", "orbitpainter"
ROOT = Path(__file__).resolve().parents[2]
LOG_TAIL = 4000  # characters of the child's output quoted when it fails


class MissingPackageError(OrbitexError):
    """A Python package or environment a generator needs is not installed."""


def diffsynth_python() -> Path:
    """The interpreter that has DiffSynth: $ORBITEX_DIFFSYNTH_PYTHON, else .venv/diffsynth."""
    configured = os.environ.get("ORBITEX_DIFFSYNTH_PYTHON")
    return Path(configured) if configured else ROOT / ".venv" / "diffsynth" / "bin" / "python"


def require_diffsynth() -> Path:
    python = diffsynth_python()
    if not python.is_file():
        raise MissingPackageError(
            f"the orbitpainter generator runs through DiffSynth in its own environment, and {python} does not "
            "exist: run `python build.py setup` (it makes .venv/diffsynth: torch 2.14.1 + torchvision 0.29.1 + "
            "diffsynth 2.1.12), or set ORBITEX_DIFFSYNTH_PYTHON to an interpreter that has them; "
            "or use --generator wan-vace or projection")
    return python


def lora_files(folder: Path) -> dict[str, Path]:
    high = sorted(folder.glob("high_noise*.safetensors"))
    low = sorted(folder.glob("low_noise*.safetensors"))
    return {"high": high[-1], "low": low[-1]}


class OrbitPainterGenerator:
    name = "orbitpainter"

    def __init__(self) -> None:
        self._child: subprocess.Popen | None = None  # the DiffSynth process, kept between calls
        self._reports: IO[str] | None = None
        self._log: Path | None = None

    @property
    def child_pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def prepare(self, options: GenerateOptions, frames: int, size: int) -> None:
        check_shape(frames, size, self.name)
        from .registry import require

        require([LORA, BASE, ENCODERS])  # every missing one named, with its install command
        require_diffsynth()
        check_model_memory(BASE, frames, size, options, extra=(ENCODERS, LORA))

    def generate(self, mesh: Mesh, orbits: Sequence[Orbit], reference: Reference, options: GenerateOptions,
                 progress: Progress) -> dict[str, np.ndarray]:
        from .registry import require

        validate_modes(orbits, options)
        n, size = len(orbits[0]), orbits[0].gbuffers.mask.shape[1]
        check_shape(n, size, self.name)
        if options.init_frames and options.strength < 1.0:
            start_step(options.steps or STEPS, options.strength)  # leaves at least one step
        python = require_diffsynth()
        models = require([LORA, BASE, ENCODERS])
        request, arrays = build_request(orbits, reference, options, {
            "base": str(models[BASE]), "encoders": str(models[ENCODERS]),
            "lora": {k: str(v) for k, v in lora_files(models[LORA]).items()}}, pick_device(options.device))
        with tempfile.TemporaryDirectory(prefix="orbitex-orbitpainter-") as tmp:
            folder = Path(tmp)
            (folder / "request.json").write_text(json.dumps(request))
            np.savez(folder / "request.npz", **arrays)
            self._ask(python, folder, progress)
            with np.load(folder / "result.npz") as result:
                return {o.name: result[o.name].astype(np.float32) for o in orbits}

    def _start(self, python: Path) -> None:
        if self._child is not None and self._child.poll() is None:
            return
        self.close()
        read_fd, write_fd = os.pipe()
        fd, log = tempfile.mkstemp(prefix="orbitex-orbitpainter-", suffix=".log")
        self._log = Path(log)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "DIFFSYNTH_SKIP_DOWNLOAD": "True",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self._child = subprocess.Popen([str(python), "-m", "backend.models.orbitpainter_run", str(write_fd)],
                                       stdin=subprocess.PIPE, text=True, pass_fds=(write_fd,), stdout=fd,
                                       stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        os.close(write_fd)
        os.close(fd)
        self._reports = os.fdopen(read_fd)

    def _ask(self, python: Path, folder: Path, progress: Progress) -> None:
        self._start(python)
        assert self._child is not None and self._child.stdin is not None and self._reports is not None
        try:
            self._child.stdin.write(json.dumps({"folder": str(folder)}) + "\n")
            self._child.stdin.flush()
            error = _forward(self._reports, progress)
        except BaseException:
            self.close()  # cancelled (or this side failed): the child's work is of no use
            raise
        if error is not None:
            raise OrbitexError(f"orbitpainter: {error}")
        if not (folder / "result.npz").is_file():
            self._child.wait()
            tail = self._log.read_text(errors="replace")[-LOG_TAIL:] if self._log else ""
            code = self._child.returncode
            self.close()
            raise RuntimeError(f"the orbitpainter process ({python}) ended with exit code {code}:\n{tail}")

    def close(self) -> None:
        """End the DiffSynth process (the next generate starts a new one)."""
        if self._child is not None:
            if self._child.poll() is None:
                self._child.kill()
            self._child.wait()
            if self._child.stdin is not None:
                self._child.stdin.close()
        if self._reports is not None:
            self._reports.close()
        if self._log is not None:
            self._log.unlink(missing_ok=True)
        self._child = self._reports = self._log = None

    def __del__(self) -> None:
        self.close()


def build_request(orbits: Sequence[Orbit], reference: Reference, options: GenerateOptions, models: dict,
                  device: str) -> tuple[dict, dict[str, np.ndarray]]:
    """What the DiffSynth process is given: settings, and per orbit the position and normal control
    videos in Ink3D's encoding (uint8), init frames and the regenerate mask; the reference on black."""
    size = orbits[0].gbuffers.mask.shape[1]
    request = {
        "orbits": [o.name for o in orbits], "device": device, "models": models,
        "options": {"prompt": options.prompt, "negative_prompt": options.negative_prompt or NEGATIVE_PROMPT,
                    "seed": options.seed, "steps": options.steps or STEPS,
                    "cfg": options.guidance if options.guidance is not None else CFG,
                    "strength": options.strength},
    }
    arrays = {"reference": _uint8(square_reference(reference, size))}
    for orbit in orbits:
        g = orbit.gbuffers
        arrays[f"{orbit.name}_position"] = _uint8(encode_positions(g.position, g.mask))
        arrays[f"{orbit.name}_normal"] = _uint8(encode_normals(g.normal, g.mask))
        if options.init_frames:
            arrays[f"{orbit.name}_init"] = options.init_frames[orbit.name].astype(np.float32)
        if options.masks:
            arrays[f"{orbit.name}_regenerate"] = options.masks[orbit.name].astype(bool)
    return request, arrays


def _forward(reports: IO[str], progress: Progress) -> str | None:
    """Pass the child's progress reports on until it is done (a Cancelled raised by `progress`
    propagates); the child's error message, if it sent one. Returns at end of file too (the child
    died: the caller finds no result)."""
    for line in reports:
        message = json.loads(line)
        if "error" in message:
            return str(message["error"])
        progress(float(message["progress"]), str(message["stage"]))
        if message.get("done"):
            break
    return None


def _uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)

