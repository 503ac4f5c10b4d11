"""Streaming multipart upload of a job: the JSON spec plus one file per input role.

The body is parsed as it arrives (python-multipart's push parser) and every file part goes
straight to disk under a name we make (role + a safe suffix), never the client's file name, so
an upload cannot write outside the staging folder. The size limit is enforced on the bytes read
so far, not on a Content-Length the client may not send or may lie about.
"""
from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, AsyncIterator, BinaryIO

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

SPEC_FIELD = "spec"
MAX_SPEC_BYTES = 1 << 20
MAX_PARTS = 32
# After the limit is crossed the rest of the body is read and dropped (up to this much more), so
# the client gets to read the 413 instead of a connection reset in the middle of its send.
DRAIN_BYTES = 64 << 20

_ROLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# RFC 6266 / RFC 8187 extended parameter: filename*=CHARSET'LANGUAGE'PERCENT-ENCODED
_EXTENDED_FILENAME = re.compile(rb"""(?:^|;)\s*filename\*\s*=\s*([A-Za-z0-9!#$%&+^_`{}~-]*)'[^']*'([^;\s]*)""")
_SUFFIX = re.compile(r"\.[a-z0-9]{1,10}")


class UploadError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class StoredInput:
    role: str
    file: str  # name inside the staging folder
    filename: str  # the client's file name, for display only
    size: int = 0


@dataclass
class Upload:
    spec: bytes | None = None
    inputs: dict[str, StoredInput] = field(default_factory=dict)


def safe_suffix(filename: str) -> str:
    """The lower-case extension of a client file name when it is plain (".glb"), else ""."""
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    return suffix if _SUFFIX.fullmatch(suffix) else ""


def display_name(filename: str) -> str:
    """A client's file name reduced to something harmless to echo back (no path, no controls)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in base if c.isprintable())[:200]


def filename_of(disposition: bytes, options: dict[bytes, bytes]) -> str:
    """The client's file name of a form part: `filename*=` when given (it wins, RFC 6266 4.3), else
    `filename=`. python-multipart's header parser knows only the latter."""
    extended = _EXTENDED_FILENAME.search(disposition)
    if extended:
        charset = extended.group(1).decode("ascii").lower() or "utf-8"
        raw = urllib.parse.unquote_to_bytes(extended.group(2))
        try:
            return raw.decode(charset, "replace")
        except LookupError:  # a charset Python does not know
            return raw.decode("utf-8", "replace")
    return options.get(b"filename", b"").decode("utf-8", "replace")


def boundary_of(content_type: str | None) -> bytes:
    if not content_type:
        raise UploadError(415, "expected a multipart/form-data request (form field 'spec' plus one file per input)")
    mime, options = parse_options_header(content_type)
    if mime != b"multipart/form-data":
        raise UploadError(415, f"unsupported content type {mime.decode('latin-1')!r}; expected multipart/form-data"
                               " (form field 'spec' plus one file per input)")
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart/form-data request without a boundary")
    return boundary


class _Receiver:
    """python-multipart callbacks writing parts to `folder`; errors are raised after write()."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.upload = Upload()
        self.error: UploadError | None = None
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._parts = 0
        self._spec: bytearray | None = None
        self._file: BinaryIO | None = None
        self._input: StoredInput | None = None

    def fail(self, status: int, detail: str) -> None:
        if self.error is None:
            self.error = UploadError(status, detail)

    def on_part_begin(self) -> None:
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def on_headers_finished(self) -> None:
        if self.error:
            return
        self._parts += 1
        if self._parts > MAX_PARTS:
            return self.fail(400, f"too many form parts (at most {MAX_PARTS})")
        header = self._headers.get(b"content-disposition", b"")
        disposition, options = parse_options_header(header)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = filename_of(header, options)
        if disposition != b"form-data" or not name:
            return self.fail(400, "a form part has no Content-Disposition name")
        if name == SPEC_FIELD:
            if self.upload.spec is not None or self._spec is not None:
                return self.fail(400, "form field 'spec' given twice")
            self._spec = bytearray()
            return
        if not _ROLE.fullmatch(name):
            return self.fail(400, f"invalid input field name {''.join(c for c in name if c.isprintable())[:64]!r}: use the input role,"
                                  " e.g. 'mesh'")
        if name in self.upload.inputs:
            return self.fail(400, f"input {name!r} given twice")
        stored = StoredInput(role=name, file=name + safe_suffix(filename), filename=display_name(filename))
        self.upload.inputs[name] = self._input = stored
        self._file = open(self.folder / stored.file, "xb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error:
            return
        if self._spec is not None:
            self._spec += data[start:end]
            if len(self._spec) > MAX_SPEC_BYTES:
                self.fail(400, f"form field 'spec' is larger than {MAX_SPEC_BYTES} bytes")
        elif self._file is not None and self._input is not None:
            self._file.write(data[start:end])
            self._input.size += end - start

    def on_part_end(self) -> None:
        if self._spec is not None:
            self.upload.spec, self._spec = bytes(self._spec), None
        if self._file is not None:
            self._file.close()
            self._file = None
        self._input = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def callbacks(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end",
            "on_headers_finished", "on_part_data", "on_part_end")}


async def receive(chunks: AsyncIterator[bytes], content_type: str | None, content_length: str | None,
                  folder: Path, max_bytes: int) -> Upload:
    """Parse a job upload into `folder` (which must exist and be empty); UploadError on bad input."""
    limit_text = f"the upload is larger than the limit of {max_bytes / (1 << 20):g} MiB (--max-upload-mb)"
    boundary = boundary_of(content_type)
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadError(400, "invalid Content-Length header") from None
        if declared > max_bytes + DRAIN_BYTES:
            raise UploadError(413, limit_text)
    receiver = _Receiver(folder)
    parser = MultipartParser(boundary, receiver.callbacks())
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                receiver.close()
                if received > max_bytes + DRAIN_BYTES:
                    break
                continue  # drain
            if receiver.error is None:
                try:
                    parser.write(chunk)
                except Exception as exc:  # python-multipart's parse errors
                    receiver.fail(400, f"malformed multipart body ({type(exc).__name__}: {exc})")
    finally:
        receiver.close()
    if received > max_bytes:
        raise UploadError(413, limit_text)
    if receiver.error is not None:
        raise receiver.error
    try:
        parser.finalize()
    except Exception as exc:
        raise UploadError(400, f"malformed multipart body ({type(exc).__name__}: {exc})") from None
    if parser.state != MultipartState.END:
        raise UploadError(400, "incomplete multipart body (no closing boundary)")
    return receiver.upload
