"""A video record's payload streamed from its WARC span into a scratch file: memory bounded, hashed on the way.

A video is read by PyAV from a file, never from bytes in memory, so a stage's memory does not grow with the
length of a video. `VideoRecord` opens one record's `[offset, offset + length)` span of its WARC file (a
gzip member is decompressed as it streams; fastwarc parses the WARC and HTTP headers), gives its HTTP
status and headers without reading the body, and `spool` copies the body (content-decoded when it has a
`Content-Encoding`) in chunks into a temporary file, hashing it (SHA-256) and stopping at the byte limit
(`video_too_large`). The file is deleted when the record is closed.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from fastwarc.warc import ArchiveIterator

from mmrecipe.storage import Storage
from mmrecipe.video.decoding import VideoRejected

CHUNK = 1 << 20


class _Span(io.RawIOBase):
    """The bytes [offset, offset + length) of an open file, as a seekable stream of their own."""

    def __init__(self, f: BinaryIO, offset: int, length: int) -> None:
        self.f, self.offset, self.length, self.pos = f, offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.length}[whence]
        self.pos = min(max(0, base + pos), self.length)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.length - self.pos)
        if n <= 0:
            return 0
        self.f.seek(self.offset + self.pos)
        data = self.f.read(n)
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


@dataclass(frozen=True)
class SpooledPayload:
    """A record's HTTP body in a local file: its path, size and SHA-256."""

    path: str
    size: int
    sha256: str


def _decoded(chunks: Iterator[bytes], encoding: str, max_bytes: int) -> Iterator[bytes]:
    """`chunks` decoded from `Content-Encoding: gzip/deflate` (at most `max_bytes` + 1 bytes are produced)."""
    if encoding in ("", "identity"):
        yield from chunks
        return
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
    d, produced = zlib.decompressobj(47 if encoding != "deflate" else 15), 0  # 47: gzip or zlib header
    try:
        for chunk in chunks:
            while chunk and produced <= max_bytes:
                piece = d.decompress(chunk, CHUNK)
                produced += len(piece)
                yield piece
                chunk = d.unconsumed_tail
        yield d.flush()
    except zlib.error as e:
        raise ValueError(f"Content-Encoding {encoding}: {e}") from None


class VideoRecord:
    """One WARC record opened by its span: HTTP status and headers now, the body streamed on `spool`."""

    def __init__(self, storage: Storage, warc_path: str, offset: int, length: int) -> None:
        self.storage, self.where = storage, f"{warc_path}@{offset}"
        self._file = storage.open_input(warc_path)
        self._spooled: str | None = None
        try:
            stream = io.BufferedReader(_Span(self._file, offset, length), 1 << 16)
            self._record = next(iter(ArchiveIterator(stream, parse_http=True, strict_mode=False)), None)
            if self._record is None:
                raise ValueError(f"{self.where}: no WARC record in the span")
        except BaseException:
            self.close()
            raise
        http = self._record.is_http
        self.http_status: int | None = self._record.http_headers.status_code if http else None
        self.http_headers: dict[str, str] = {k.lower(): v for k, v in self._record.http_headers.items()} if http else {}

    def _chunks(self) -> Iterator[bytes]:
        while chunk := self._record.reader.read(CHUNK):
            yield chunk

    def spool(self, max_bytes: int, expected_sha256: str | None = None) -> SpooledPayload:
        """The body copied to a scratch file (VideoRejected `video_too_large` past `max_bytes`; ValueError if the
        content encoding is broken, or if a body without one does not hash to `expected_sha256`, raw_crawl's)."""
        encoding = self.http_headers.get("content-encoding", "").strip().lower()
        fd, path = tempfile.mkstemp(suffix=".video", dir=self.storage.scratch_dir())
        self._spooled, digest, size = path, hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            for chunk in _decoded(self._chunks(), encoding, max_bytes):
                size += len(chunk)
                if size > max_bytes:
                    raise VideoRejected("video_too_large", f"more than {max_bytes} bytes (limit {max_bytes})")
                digest.update(chunk)
                out.write(chunk)
        sha256 = digest.hexdigest()
        if expected_sha256 and encoding in ("", "identity") and sha256 != expected_sha256:
            raise ValueError(
                f"{self.where}: the payload hashes to {sha256}, raw_crawl indexed {expected_sha256}: the WARC file "
                "changed since it was indexed; re-materialize raw_crawl"
            )
        return SpooledPayload(path, size, sha256)

    def close(self) -> None:
        self._file.close()
        if self._spooled is not None and os.path.exists(self._spooled):
            os.unlink(self._spooled)
        self._spooled = None

    def __enter__(self) -> VideoRecord:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
