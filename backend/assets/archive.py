"""Bounded zip extraction for uploaded folders (view sets).

Before anything is written the archive's directory is checked against ArchiveLimits: member count,
total uncompressed size, and compression ratio (a zip bomb packs gigabytes of zeros into a few
megabytes; real view sets are PNG/JPEG/EXR images that barely compress). While extracting, no
member may yield more bytes than it declared, so a lying header cannot get past the checks.
Members are written only inside the target folder (no absolute paths, no `..`, no links).

The limits are generous by default and configurable: `python -m backend serve --archive-max-mb ...`
(which sets the ORBITEX_ARCHIVE_* variables below for its worker), or the variables themselves
for the CLI.
"""
from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InputError

MAX_MB_ENV = "ORBITEX_ARCHIVE_MAX_MB"
MAX_FILES_ENV = "ORBITEX_ARCHIVE_MAX_FILES"
MAX_RATIO_ENV = "ORBITEX_ARCHIVE_MAX_RATIO"
# Members smaller than this are exempt from the per-member ratio (a transforms.json of spaces
# compresses 100x and is harmless); the whole archive's ratio still counts them.
_RATIO_FLOOR_BYTES = 1 << 20
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int = 16 << 30  # total uncompressed size
    max_files: int = 50_000
    max_ratio: float = 200.0  # uncompressed / compressed, per large member and for the whole archive

    @classmethod
    def from_env(cls) -> ArchiveLimits:
        default = cls()

        def number(name: str, fallback: float) -> float:
            text = os.environ.get(name, "").strip()
            if not text:
                return fallback
            try:
                value = float(text)
            except ValueError:
                raise InputError(f"{name}={text!r} is not a number") from None
            if not value > 0:
                raise InputError(f"{name} must be positive (got {text})")
            return value

        return cls(max_bytes=int(number(MAX_MB_ENV, default.max_bytes / (1 << 20)) * (1 << 20)),
                   max_files=int(number(MAX_FILES_ENV, default.max_files)),
                   max_ratio=number(MAX_RATIO_ENV, default.max_ratio))


def _member_path(name: str, label: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise InputError(f"{label}: member {name[:200]!r} points outside the archive")
    return path


def _check(members: list[zipfile.ZipInfo], archive_size: int, limits: ArchiveLimits, label: str) -> None:
    if len(members) > limits.max_files:
        raise InputError(f"{label}: {len(members)} files in the archive, more than the limit of {limits.max_files}"
                         f" ({MAX_FILES_ENV} / --archive-max-files)")
    total = sum(m.file_size for m in members)
    if total > limits.max_bytes:
        raise InputError(f"{label}: {total / (1 << 20):.0f} MiB uncompressed, more than the limit of"
                         f" {limits.max_bytes / (1 << 20):.0f} MiB ({MAX_MB_ENV} / --archive-max-mb)")
    for member in members:
        if member.file_size > _RATIO_FLOOR_BYTES and member.file_size > limits.max_ratio * max(member.compress_size, 1):
            raise InputError(f"{label}: member {member.filename[:200]!r} expands {member.file_size / max(member.compress_size, 1):.0f}x,"
                             f" more than the limit of {limits.max_ratio:g}x ({MAX_RATIO_ENV} / --archive-max-ratio)")
    if total > _RATIO_FLOOR_BYTES and total > limits.max_ratio * max(archive_size, 1):
        raise InputError(f"{label}: the archive expands {total / max(archive_size, 1):.0f}x, more than the limit of"
                         f" {limits.max_ratio:g}x ({MAX_RATIO_ENV} / --archive-max-ratio)")


def extract_zip(archive: Path, into: Path, limits: ArchiveLimits | None = None) -> None:
    """Extract `archive` into the folder `into` (created) within `limits` (default: from the environment).
    On an InputError part of it may have been written: extract into a folder the caller removes."""
    limits = ArchiveLimits.from_env() if limits is None else limits
    label = archive.name
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _check(members, archive.stat().st_size, limits, label)
            into.mkdir(parents=True, exist_ok=True)
            for member in members:
                relative = _member_path(member.filename, label)
                if stat.S_ISLNK(member.external_attr >> 16):
                    raise InputError(f"{label}: member {member.filename[:200]!r} is a symbolic link; links are not"
                                     " accepted in uploaded archives")
                target = into.joinpath(*relative.parts)
                if member.is_dir() or not relative.parts:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as source, open(target, "wb") as sink:
                    written = 0
                    while chunk := source.read(_COPY_CHUNK):
                        written += len(chunk)
                        if written > member.file_size:  # more than its header declared
                            raise InputError(f"{label}: member {member.filename[:200]!r} holds more than its"
                                             " declared size; the archive is damaged or crafted")
                        sink.write(chunk)
    except zipfile.BadZipFile as exc:
        raise InputError(f"{label}: not a readable zip file ({exc})") from None
    except (NotImplementedError, RuntimeError) as exc:  # unknown compression method, encrypted member
        raise InputError(f"{label}: cannot extract the archive ({exc})") from None
