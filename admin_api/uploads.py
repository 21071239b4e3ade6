"""Uploaded files: a request body received into a temporary file as it arrives.

In: the request (its body read chunk by chunk) and the media types the
route takes as the file itself. Out: a ``SpooledTemporaryFile`` holding the
file's bytes, rewound: the body itself when its ``Content-Type`` is one of
those types, or the part named ``file`` of a ``multipart/form-data`` body
(RFC 7578; parsed as it streams by ``python_multipart``, no other part
kept). Past ``max_bytes`` of body the upload is refused (413) before more
is read; another media type is 415; a form without a ``file`` part, or not
a form at all, is 422 naming ``file``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection
from typing import IO, TYPE_CHECKING

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from admin_api.errors import ApiError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD = "file"
MEMORY_BYTES = 1024 * 1024
"""Of an upload being received, what is kept in memory before it goes to disk."""


async def receive_file(request: Request, media_types: Collection[str], max_bytes: int) -> IO[bytes]:
    """The uploaded file (see the module), rewound; the caller closes it."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    kind = media_type.decode("latin-1").lower()
    spooled = tempfile.SpooledTemporaryFile(max_size=MEMORY_BYTES)  # noqa: SIM115
    try:
        if kind in media_types:
            await _receive(request, spooled.write, max_bytes)
        elif kind == "multipart/form-data":
            await _receive_part(request, options.get(b"boundary", b""), spooled, max_bytes)
        else:
            wanted = " or ".join([*media_types, "multipart/form-data"])
            raise ApiError(415, "unsupported_media_type", f"send the file as {wanted}")
    except BaseException:
        spooled.close()
        raise
    spooled.seek(0)
    return spooled


async def _receive(request: Request, write: Callable[[bytes], object], max_bytes: int) -> None:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, "too_large", f"the upload is over {max_bytes} bytes")
        write(chunk)


async def _receive_part(request: Request, boundary: bytes, into: IO[bytes], max_bytes: int) -> None:
    part = _FilePart(into)
    if not boundary:
        raise _no_file("the multipart body has no boundary")
    parser = MultipartParser(boundary, part.callbacks())
    try:
        await _receive(request, parser.write, max_bytes)
        parser.finalize()
    except MultipartParseError as exc:
        raise _no_file(f"the multipart body does not parse: {exc}") from None
    if not part.found:
        raise _no_file(f"the form has no part named {FILE_FIELD!r}")


def _no_file(message: str) -> ApiError:
    return ApiError(422, "invalid", message, FILE_FIELD)


class _FilePart:
    """Writes the data of the part named ``file`` to ``into``; skips the others."""

    def __init__(self, into: IO[bytes]) -> None:
        self._into = into
        self._header = b""
        self._value = b""
        self._wanted = False
        self.found = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_part_data": self._data,
        }

    def _begin(self) -> None:
        self._wanted = False
        self._header = self._value = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            _, options = parse_options_header(self._value)
            self._wanted = options.get(b"name") == FILE_FIELD.encode() and not self.found
            self.found = self.found or self._wanted
        self._header = self._value = b""

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._wanted:
            self._into.write(data[start:end])
