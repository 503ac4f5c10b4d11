"""Images and videos: read any common image as float RGB(A) in [0, 1], write PNG and H.264 MP4.

Reading decodes with OpenCV (keeps 16-bit PNGs at full depth) after Pillow has checked the header,
so a huge or broken file is refused before anything big is decoded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

MAX_PIXELS = 64_000_000  # refuse larger images (64 Mpx) before decoding them
MIN_SIDE = 2


def read_image(path: str | Path) -> np.ndarray:
    """Float32 (H, W, 3) RGB or (H, W, 4) RGBA in [0, 1]; InputError naming the file if unusable."""
    import cv2
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such image file")
    try:
        with Image.open(path) as header:
            width, height = header.size
    except UnidentifiedImageError:
        width = height = None  # not a format Pillow knows (e.g. EXR): OpenCV may still read it
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken headers
        raise InputError(f"{path.name}: cannot read the image ({type(exc).__name__}: {exc})") from None
    if width is not None:
        _check_size(path, width, height)
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if len(data) else None
    if image is None:
        raise InputError(f"{path.name}: cannot decode the image (corrupt or unsupported format)")
    _check_size(path, image.shape[1], image.shape[0])
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[2]
    if channels == 1:
        image = np.repeat(image, 3, axis=2)
    elif channels == 2:  # grey + alpha
        image = np.concatenate([np.repeat(image[..., :1], 3, axis=2), image[..., 1:]], axis=2)
    elif channels == 3:
        image = image[..., ::-1]  # BGR -> RGB
    elif channels == 4:
        image = image[..., [2, 1, 0, 3]]
    else:
        raise InputError(f"{path.name}: unsupported image with {channels} channels")
    if image.dtype == np.uint8:
        out = image.astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        out = image.astype(np.float32) / 65535.0
    elif np.issubdtype(image.dtype, np.floating):
        out = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    else:
        raise InputError(f"{path.name}: unsupported pixel type {image.dtype}")
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0))


def _check_size(path: Path, width: int, height: int) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InputError(f"{path.name}: the image is only {width}x{height} pixels")
    if width * height > MAX_PIXELS:
        raise InputError(f"{path.name}: the image is {width}x{height} ({width * height / 1e6:.0f} Mpx); "
                         f"the limit is {MAX_PIXELS / 1e6:.0f} Mpx")


def to_uint(image: np.ndarray, bits: int = 8) -> np.ndarray:
    """Float image in [0, 1] -> uint8 / uint16 (rounded); integer images pass through."""
    image = np.asarray(image)
    if image.dtype == np.uint8 and bits == 8 or image.dtype == np.uint16 and bits == 16:
        return image
    if image.dtype == np.bool_:
        image = image.astype(np.float32)
    if np.issubdtype(image.dtype, np.integer):
        raise ValueError(f"cannot write a {image.dtype} image as {bits}-bit")
    top = 255 if bits == 8 else 65535
    return (np.clip(np.nan_to_num(image), 0.0, 1.0) * top + 0.5).astype(np.uint8 if bits == 8 else np.uint16)


def write_png(path: str | Path, image: np.ndarray, bits: int = 8) -> Path:
    """Write (H, W), (H, W, 3) or (H, W, 4) as an 8- or 16-bit PNG (floats are taken in [0, 1])."""
    import cv2

    if bits not in (8, 16):
        raise ValueError("PNG depth must be 8 or 16 bits")
    pixels = to_uint(image, bits)
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = pixels[..., ::-1]
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[..., [2, 1, 0, 3]]
    elif pixels.ndim != 2 and not (pixels.ndim == 3 and pixels.shape[2] == 1):
        raise ValueError(f"cannot write an image of shape {pixels.shape} as PNG")
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels))
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded.tobytes())
    return path


class Mp4Writer:
    """Stream uint8 (H, W, 3) frames into an H.264 MP4 (yuv420p), the way Ink3D stores its orbit
    conditioning videos. yuv420p needs even sizes, so odd ones are padded by one edge pixel.
    Use as a context manager; frames are sent as they come, so no video is held in memory."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float = 24.0, quality: float = 8.0) -> None:
        import imageio_ffmpeg

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (width, height)
        self._pad = (height % 2, width % 2)
        self._writer = imageio_ffmpeg.write_frames(
            str(self.path), (width + self._pad[1], height + self._pad[0]), fps=fps, codec="libx264",
            pix_fmt_out="yuv420p", quality=quality, macro_block_size=1)
        self._writer.send(None)  # start the encoder
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ValueError(f"{self.path.name}: frames must be uint8 {self.size[1]}x{self.size[0]}x3, got "
                             f"{frame.dtype} {frame.shape}")
        if any(self._pad):
            frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        self._writer.send(np.ascontiguousarray(frame))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_mp4(frames: np.ndarray, path: str | Path, fps: float = 24.0, quality: float = 8.0) -> Path:
    """Encode uint8 (N, H, W, 3) frames as an H.264 MP4 (see Mp4Writer)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError("write_mp4 needs uint8 frames of shape (N, H, W, 3), N >= 1")
    with Mp4Writer(path, frames.shape[2], frames.shape[1], fps, quality) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)
