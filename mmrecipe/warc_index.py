"""WARC records: byte-exact framing, the raw_crawl index rows, and payload reads by offset.

fastwarc parses each record, but it cannot tell where a broken record ends: it yields a
truncated gzip member as an empty record and reports a wrong Content-Length only on the
*next* record. So framing is done here first (gzip members with zlib, plain records by
header + Content-Length + CRLFCRLF), which gives every record an exact `[offset, offset +
length)` span. Every byte of every file is then covered by an index row or a reject, and a
bad record costs only itself.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import pyarrow as pa
from fastwarc.warc import ArchiveIterator

from mmrecipe.stage_output import PROVENANCE_FIELDS
from mmrecipe.storage import Storage

GZIP_MAGIC = b"\x1f\x8b\x08"
_CHUNK = 1 << 16

INDEX_SCHEMA = pa.schema(
    [
        *PROVENANCE_FIELDS,
        pa.field("warc_length", pa.int64(), nullable=False),
        pa.field("record_type", pa.string(), nullable=False),
        pa.field("warc_record_id", pa.string()),
        pa.field("target_uri", pa.string()),
        pa.field("warc_date", pa.string()),
        pa.field("http_status", pa.int32()),
        pa.field("mime_type", pa.string()),
        pa.field("payload_length", pa.int64()),
        pa.field("payload_sha256", pa.string()),
        pa.field("payload_digest_verified", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class WarcLimits:
    """Safety limits applied while framing and parsing WARC records."""

    max_record_bytes: int = 256 << 20  # decompressed size of one record
    max_header_bytes: int = 1 << 20


@dataclass
class Frame:
    """One span of a WARC file: a whole record's bytes, or an error that covers the span."""

    offset: int
    length: int
    data: bytes | None = None
    reason: str | None = None
    detail: str = ""


@dataclass
class WarcRecord:
    """A parsed WARC record: its WARC and HTTP headers and its payload bytes."""

    record_type: str
    warc_headers: dict[str, str]
    http_status: int | None
    http_headers: dict[str, str]
    payload: bytes
    is_http: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def target_uri(self) -> str | None:
        return normalize_uri(self.warc_headers.get("WARC-Target-URI"))

    @property
    def mime_type(self) -> str | None:
        return normalize_mime(self.http_headers.get("content-type")) if self.is_http else None


def normalize_uri(uri: str | None) -> str | None:
    """A target URI without the angle brackets some writers (wget 1.21) wrap it in."""
    if uri is None:
        return None
    uri = uri.strip()
    return uri[1:-1].strip() if uri.startswith("<") and uri.endswith(">") else uri


def normalize_mime(content_type: str | None) -> str | None:
    """The lower-cased media type of a Content-Type header, without parameters."""
    if not content_type:
        return None
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime or None


def record_id_for(drop: str, warc_name: str, offset: int) -> str:
    """A record's stable id: unique per drop, WARC file and byte offset."""
    return hashlib.sha1(f"{drop}/{warc_name}@{offset}".encode()).hexdigest()[:24]


# --- framing ------------------------------------------------------------------------------
def _resync_gzip(f: BinaryIO, start: int, size: int) -> int:
    """Offset of the next gzip member at or after `start` that holds a WARC record (or `size`)."""
    pos = start
    while pos < size:
        f.seek(pos)
        block = f.read(_CHUNK + 2)
        i = block.find(GZIP_MAGIC)
        while i != -1:
            f.seek(pos + i)
            try:
                head = zlib.decompressobj(31).decompress(f.read(512), 16)
            except zlib.error:
                head = b""
            if head.startswith(b"WARC/"):
                return pos + i
            i = block.find(GZIP_MAGIC, i + 1)
        pos += _CHUNK
    return size


def _gzip_frames(f: BinaryIO, size: int, limits: WarcLimits) -> Iterator[Frame]:
    pos = 0
    while pos < size:
        f.seek(pos)
        if f.read(3) != GZIP_MAGIC:
            nxt = _resync_gzip(f, pos + 1, size)
            yield Frame(pos, nxt - pos, reason="garbage_bytes", detail=f"{nxt - pos} bytes that are not a gzip member")
            pos = nxt
            continue
        f.seek(pos)
        d = zlib.decompressobj(31)
        out: bytearray | None = bytearray()
        n_out = read_total = 0
        error = None
        while not d.eof:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            read_total += len(chunk)
            data = chunk
            try:
                while data and not d.eof:
                    piece = d.decompress(data, 1 << 20)
                    n_out += len(piece)
                    if out is not None:
                        out += piece
                        if n_out > limits.max_record_bytes:
                            out = None
                    data = d.unconsumed_tail
                    if out is None:
                        break
            except zlib.error as e:
                error = ("corrupt_gzip_member", str(e))
                break
            if out is None:
                error = ("record_too_large", f"decompresses to more than {limits.max_record_bytes} bytes")
                break
        if error:
            nxt = _resync_gzip(f, pos + 1, size)
            yield Frame(pos, nxt - pos, reason=error[0], detail=error[1])
            pos = nxt
            continue
        if not d.eof:
            yield Frame(
                pos, size - pos, reason="truncated_gzip_member", detail=f"member ends at EOF after {n_out} bytes"
            )
            return
        end = pos + read_total - len(d.unused_data)
        yield _check_record_bytes(Frame(pos, end - pos, data=bytes(out or b"")))
        pos = end


def _check_record_bytes(frame: Frame) -> Frame:
    """A gzip member's frame, turned into an error if it is not exactly one whole record."""
    data = frame.data or b""
    head_end = data.find(b"\r\n\r\n")
    if not data.startswith(b"WARC/") or head_end == -1:
        return Frame(frame.offset, frame.length, reason="not_a_warc_record", detail=repr(data[:40]))
    clen = _content_length(data[:head_end])
    if clen is None:
        return Frame(frame.offset, frame.length, reason="missing_content_length")
    expected = head_end + 4 + clen + 4
    if len(data) == expected and data.endswith(b"\r\n\r\n"):
        return frame
    if len(data) > expected and data[expected:].startswith(b"WARC/"):
        return Frame(frame.offset, frame.length, reason="multiple_records_in_gzip_member")
    detail = f"Content-Length {clen} but the record block is {len(data) - head_end - 8} bytes"
    return Frame(frame.offset, frame.length, reason="content_length_mismatch", detail=detail)


_CLEN = re.compile(rb"(?im)^content-length:\s*(\d+)\s*$")


def _content_length(header: bytes) -> int | None:
    m = _CLEN.search(header)
    return int(m.group(1)) if m else None


def _resync_plain(f: BinaryIO, start: int, size: int) -> int:
    pos = start
    while pos < size:
        f.seek(pos)
        block = f.read(_CHUNK + 8)
        i = block.find(b"\nWARC/1.")
        if i != -1:
            return pos + i + 1
        pos += _CHUNK
    return size


def _plain_frames(f: BinaryIO, size: int, limits: WarcLimits) -> Iterator[Frame]:
    pos = 0
    while pos < size:
        f.seek(pos)
        head = f.read(min(limits.max_header_bytes, size - pos))
        head_end = head.find(b"\r\n\r\n")
        if not head.startswith(b"WARC/") or head_end == -1:
            nxt = _resync_plain(f, pos + 1, size)
            yield Frame(pos, nxt - pos, reason="garbage_bytes", detail=f"{nxt - pos} bytes that are not a WARC record")
            pos = nxt
            continue
        clen = _content_length(head[:head_end])
        end = pos + head_end + 4 + (clen or 0) + 4
        if clen is None or end > size:
            nxt = _resync_plain(f, pos + head_end, size)
            reason = "missing_content_length" if clen is None else "truncated_record"
            if clen is not None and nxt < size:
                reason = "content_length_mismatch"  # another record follows: the length was wrong
            yield Frame(
                pos, nxt - pos, reason=reason, detail=f"Content-Length {clen}, file has {size - pos} bytes left"
            )
            pos = nxt
            continue
        f.seek(end - 4)
        if f.read(4) != b"\r\n\r\n":
            nxt = _resync_plain(f, pos + head_end, size)
            yield Frame(
                pos, nxt - pos, reason="content_length_mismatch", detail=f"no record end after Content-Length {clen}"
            )
            pos = nxt
            continue
        if end - pos > limits.max_record_bytes:
            yield Frame(pos, end - pos, reason="record_too_large", detail=f"{end - pos} bytes")
        else:
            f.seek(pos)
            yield Frame(pos, end - pos, data=f.read(end - pos))
        pos = end


def iter_frames(f: BinaryIO, size: int, gzipped: bool, limits: WarcLimits) -> Iterator[Frame]:
    """Every span of a WARC file in order, covering all `size` bytes."""
    return _gzip_frames(f, size, limits) if gzipped else _plain_frames(f, size, limits)


# --- parsing ------------------------------------------------------------------------------
def parse_record(data: bytes) -> WarcRecord:
    """The record held by one whole, uncompressed WARC record's bytes."""
    rec = next(iter(ArchiveIterator(io.BytesIO(data), parse_http=True, strict_mode=False)), None)
    if rec is None:
        raise ValueError("fastwarc found no record in the framed bytes")
    warc_headers = {k: v for k, v in rec.headers.items()}
    is_http = bool(rec.is_http)
    status: int | None = None
    http_headers: dict[str, str] = {}
    if is_http:
        status = rec.http_headers.status_code
        http_headers = {k.lower(): v for k, v in rec.http_headers.items()}
    payload = rec.reader.read()
    rtype = str(rec.record_type).rsplit(".", 1)[-1]
    return WarcRecord(rtype, warc_headers, status, http_headers, payload, is_http)


def decode_content(record: WarcRecord, max_bytes: int) -> WarcRecord:
    """The record with its HTTP body decoded from `Content-Encoding: gzip/deflate` (bounded by `max_bytes`)."""
    encoding = record.http_headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity") or not record.payload:
        return record
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
    wbits = 47 if encoding != "deflate" else 15  # 47: gzip or zlib header, auto-detected
    d = zlib.decompressobj(wbits)
    try:
        body = d.decompress(record.payload, max_bytes + 1)
    except zlib.error as e:
        raise ValueError(f"Content-Encoding {encoding}: {e}") from None
    if len(body) > max_bytes:
        raise ValueError(f"Content-Encoding {encoding}: decodes to more than {max_bytes} bytes")
    headers = {k: v for k, v in record.http_headers.items() if k != "content-encoding"}
    return WarcRecord(record.record_type, record.warc_headers, record.http_status, headers, body, record.is_http)


def verify_digest(header: str | None, payload: bytes) -> bool | None:
    """Whether `payload` matches a `WARC-Payload-Digest` header (None if absent or unknown)."""
    if not header or ":" not in header:
        return None
    algo, _, value = header.partition(":")
    algo = algo.strip().lower().replace("-", "")
    if algo not in hashlib.algorithms_available:
        return None
    digest = hashlib.new(algo, payload).digest()
    value = value.strip()
    return value.upper() == base64.b32encode(digest).decode() or value.lower() == digest.hex()


def index_warc(
    storage: Storage, drop: str, warc_uri: str, warc_name: str, limits: WarcLimits = WarcLimits()
) -> Iterator[tuple[dict[str, Any], str | None, str]]:
    """(row, reject reason or None, detail) for every span of one WARC file, in order."""
    size = storage.size(warc_uri)
    gzipped = warc_uri.endswith(".gz")
    with storage.open_input(warc_uri) as f:
        for frame in iter_frames(f, size, gzipped, limits):
            row: dict[str, Any] = {
                "record_id": record_id_for(drop, warc_name, frame.offset),
                "drop": drop,
                "warc_path": warc_uri,
                "warc_offset": frame.offset,
                "warc_length": frame.length,
            }
            if frame.reason:
                yield row, frame.reason, frame.detail
                continue
            try:
                rec = parse_record(frame.data or b"")
            except Exception as e:  # fastwarc raises OSError/ValueError on malformed headers
                yield row, "unparseable_record", f"{type(e).__name__}: {e}"
                continue
            if rec.record_type == "response" and rec.is_http and rec.http_status is None:
                yield row, "bad_http_headers", "response record whose HTTP status line could not be parsed"
                continue
            verified = verify_digest(rec.warc_headers.get("WARC-Payload-Digest"), rec.payload)
            if verified is False:
                yield row, "payload_digest_mismatch", rec.warc_headers.get("WARC-Payload-Digest", "")
                continue
            row |= {
                "record_type": rec.record_type,
                "warc_record_id": rec.warc_headers.get("WARC-Record-ID"),
                "target_uri": rec.target_uri,
                "warc_date": rec.warc_headers.get("WARC-Date"),
                "http_status": rec.http_status,
                "mime_type": rec.mime_type,
                "payload_length": len(rec.payload),
                "payload_sha256": hashlib.sha256(rec.payload).hexdigest(),
                "payload_digest_verified": verified,
            }
            yield row, None, ""


# --- reads by offset ----------------------------------------------------------------------
class RecordReader:
    """Reads WARC records by (warc_path, offset, length), keeping one file open at a time."""

    def __init__(self, storage: Storage, limits: WarcLimits = WarcLimits()) -> None:
        self.storage, self.limits = storage, limits
        self._uri: str | None = None
        self._file: BinaryIO | None = None

    def read(self, warc_path: str, offset: int, length: int) -> WarcRecord:
        """The record at `offset` in `warc_path`, its HTTP body content-decoded.

        Raises ValueError if the span is not one whole record or its body cannot be decoded.
        """
        if length > self.limits.max_record_bytes * 2:
            raise ValueError(f"record of {length} bytes exceeds the configured limit")
        if warc_path != self._uri:
            self.close()
            self._file, self._uri = self.storage.open_input(warc_path), warc_path
        assert self._file is not None
        self._file.seek(offset)
        raw = self._file.read(length)
        frames = list(iter_frames(io.BytesIO(raw), len(raw), warc_path.endswith(".gz"), self.limits))
        if len(frames) != 1 or frames[0].reason:
            why = frames[0].reason if frames else "empty"
            raise ValueError(f"{warc_path}@{offset}: not one whole record ({why})")
        return decode_content(parse_record(frames[0].data or b""), self.limits.max_record_bytes)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._uri = None

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
