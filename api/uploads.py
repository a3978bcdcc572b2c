"""File uploads, received only once the caller may send them, straight to disk, under a size cap.

FastAPI parses a multipart body before a route or its dependencies run (``UploadFile``/``Form``
parameters): anyone could make the server take in hundreds of megabytes before its token was even
looked at. The upload routes therefore declare no body parameters. They authenticate from the
headers first, refuse a declared ``Content-Length`` over their cap, take one of a few upload slots
(503 with ``Retry-After`` when all are busy), and only then read the body with :func:`receive_form`,
which streams file parts into a folder in chunks and stops with 413 as soon as the cap is passed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import HTTPException, RequestValidationError
from python_multipart.multipart import MultipartParser, parse_options_header

from common.errors import InvalidInput

MIB = 1024 * 1024
# A text field of an upload form (a zone name, a CRS, a reason...) is short.
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 32
RETRY_AFTER_S = 5
_UNSAFE = re.compile(r"[^\w.\-]+")
_MAX_NAME = 120


class UploadSlots:
    """At most ``capacity`` uploads received at once (a counter: callers never wait for a slot)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._busy = 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        """Take a slot; False when all are busy."""
        with self._lock:
            if self._busy >= self.capacity:
                return False
            self._busy += 1
            return True

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self._busy = max(0, self._busy - 1)


_slots_lock = threading.Lock()


def upload_slots(request: Request) -> UploadSlots:
    """The app's upload slots, made on first use."""
    with _slots_lock:
        slots: UploadSlots | None = getattr(request.app.state, "upload_slots", None)
        if slots is None:
            slots = UploadSlots(request.app.state.services.settings.imports.upload_slots)
            request.app.state.upload_slots = slots
        return slots


def too_large(limit: int) -> HTTPException:
    """413 naming the cap."""
    return HTTPException(
        413, f"请求体过大 / the upload is larger than {limit // MIB} MiB, the limit of this endpoint"
    )


def busy() -> HTTPException:
    """503 with Retry-After: every upload slot is taken."""
    return HTTPException(
        503,
        "服务器正在接收其他上传，请稍后再试 / the server is receiving other uploads: try again shortly",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def check_declared_size(request: Request, limit: int) -> None:
    """Refuse a body whose declared length is over ``limit`` bytes, before reading any of it."""
    declared = request.headers.get("content-length")
    if declared is None:
        return  # chunked: counted as it arrives
    if not declared.isdigit():
        raise InvalidInput("Content-Length must be a number of bytes")
    if int(declared) > limit:
        raise too_large(limit)


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The whole body of a route exempt from the app's cap, refused with 413 past ``limit`` bytes."""
    check_declared_size(request, limit)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


def safe_file_name(name: str | None) -> str:
    """The last part of an uploaded file's name, in characters safe on any file system.

    A name that is no file name at all ('', '.', '..', '/') is the caller's mistake, said so.
    """
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).lstrip(".")
    if not base.strip("._"):
        raise InvalidInput(
            f"文件名无效 / the uploaded file's name {name!r:.80} is not a file name: send the file with "
            "its own name and extension (lamps.geojson, inventory.zip, rules.csv...)",
            field="file",
        )
    if len(base) > _MAX_NAME:
        stem, dot, suffix = base.rpartition(".")
        base = (
            (stem[: _MAX_NAME - len(suffix) - 1] + dot + suffix)
            if dot and len(suffix) < 16
            else base[:_MAX_NAME]
        )
    return base


def missing(field_name: str) -> RequestValidationError:
    """The 422 FastAPI gives for a missing form field."""
    return RequestValidationError([{"loc": ("body", field_name), "msg": "Field required", "type": "missing"}])


@dataclass
class ReceivedFile:
    """A file part written to disk."""

    filename: str  # as the caller named it (for reports), at most 255 characters
    path: Path
    size: int = 0


@dataclass
class ReceivedForm:
    """The text fields and the files of a multipart form."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, ReceivedFile] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        """A text field, None when absent or empty."""
        value = self.fields.get(name)
        return value if value else None

    def flag(self, name: str) -> bool:
        """A boolean field ("true"/"false", "1"/"0", "yes"/"no", "on"/"off"; absent: false)."""
        value = (self.fields.get(name) or "false").strip().lower()
        if value in ("true", "1", "yes", "on"):
            return True
        if value in ("false", "0", "no", "off", ""):
            return False
        raise RequestValidationError(
            [{"loc": ("body", name), "msg": "Input should be a valid boolean", "type": "bool_parsing"}]
        )


class _Receiver:
    """python-multipart callbacks: text fields to memory (capped), file parts to their files."""

    def __init__(self, folder: Path, file_names: dict[str, str | None]) -> None:
        self.folder = folder
        self.file_names = file_names
        self.form = ReceivedForm()
        self.parts = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name: str | None = None
        self._data = bytearray()
        self._file: ReceivedFile | None = None
        self._skip = False
        self.pending: list[tuple[ReceivedFile, bytes]] = []
        self.handles: dict[str, IO[bytes]] = {}

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise InvalidInput(f"too many parts in the form (at most {MAX_PARTS})")
        self._disposition, self._name, self._file, self._skip = b"", None, None, False
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise InvalidInput("a form part has no name (Content-Disposition: form-data; name=...)")
        self._name = _decode(options[b"name"], "a form field's name")
        if b"filename" not in options:
            return
        if self._name not in self.file_names or self._name in self.form.files:
            self._skip = True  # a file the endpoint does not take: read past it, keep nothing
            return
        sent = _decode(options[b"filename"], "a file name")
        stored = self.file_names[self._name] or safe_file_name(sent)
        self._file = ReceivedFile(filename=sent[:255] or stored, path=self.folder / stored)
        self._file.path.parent.mkdir(parents=True, exist_ok=True)
        self.form.files[self._name] = self._file
        self.pending.append((self._file, b""))  # an empty file is still a file: create it

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._skip:
            return
        if self._file is not None:
            self._file.size += end - start
            self.pending.append((self._file, data[start:end]))
            return
        if len(self._data) + end - start > MAX_FIELD_BYTES:
            raise InvalidInput(f"form field {self._name!r:.40} is longer than {MAX_FIELD_BYTES // 1024} KiB")
        self._data.extend(data[start:end])

    def on_part_end(self) -> None:
        if self._file is None and not self._skip and self._name is not None:
            self.form.fields[self._name] = _decode(bytes(self._data), f"form field {self._name!r:.40}")

    def flush(self) -> None:
        """Write the file data received so far (called on a worker thread)."""
        for part, data in self.pending:
            handle = self.handles.get(part.path.name)
            if handle is None:
                handle = self.handles[part.path.name] = part.path.open("wb")
            handle.write(data)
        self.pending.clear()

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.handles.clear()


def _decode(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} is not UTF-8 text") from None
    if "\x00" in text:
        raise InvalidInput(f"{what} must not contain NUL characters")
    return text


async def receive_form(
    request: Request, folder: Path, *, limit: int, files: dict[str, str | None]
) -> ReceivedForm:
    """Read the multipart body into ``folder``: text fields to memory, the file fields named in
    ``files`` to disk (under the given name, or the caller's own name made safe when None).

    Stops with 413 as soon as more than ``limit`` bytes have come, whatever the headers said.
    """
    content_type = request.headers.get("content-type", "")
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidInput("send the upload as multipart/form-data (a form with the file in 'file')")
    receiver = _Receiver(folder, files)
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large(limit)
            parser.write(chunk)
            if receiver.pending:
                await run_in_threadpool(receiver.flush)
        parser.finalize()
        await run_in_threadpool(receiver.flush)
    except InvalidInput:
        raise
    except HTTPException:
        raise
    except Exception as exc:  # python-multipart's FormParserError and kin: a malformed body
        if type(exc).__module__.startswith("python_multipart"):
            raise InvalidInput("the multipart body is malformed") from None
        raise
    finally:
        receiver.close()
    return receiver.form
