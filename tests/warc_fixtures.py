"""Small WARC files written byte by byte for tests: real WARC/1.0 framing, chosen content."""

import base64
import gzip
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class HttpResponse:
    """One HTTP exchange to record as a WARC response record."""

    uri: str
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def _record(rtype: str, uri: str | None, block: bytes, extra: dict[str, str] | None = None) -> bytes:
    head = [
        "WARC/1.0",
        f"WARC-Type: {rtype}",
        f"WARC-Record-ID: <urn:uuid:{uuid.UUID(bytes=hashlib.md5(block + (uri or '').encode()).digest())}>",
        "WARC-Date: 2026-11-01T00:00:00Z",
    ]
    if uri:
        head.append(f"WARC-Target-URI: {uri}")
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    head += [f"Content-Length: {len(block)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + block + b"\r\n\r\n"


def response_record(resp: HttpResponse) -> bytes:
    """The bytes of one WARC response record (uncompressed), with a correct payload digest."""
    lines = [f"HTTP/1.1 {resp.status} OK", f"Content-Type: {resp.content_type}", f"Content-Length: {len(resp.body)}"]
    lines += [f"{k}: {v}" for k, v in resp.headers.items()]
    block = ("\r\n".join(lines) + "\r\n\r\n").encode() + resp.body
    digest = "sha1:" + base64.b32encode(hashlib.sha1(resp.body).digest()).decode()
    return _record(
        "response",
        resp.uri,
        block,
        {"Content-Type": "application/http; msgtype=response", "WARC-Payload-Digest": digest},
    )


def warcinfo_record() -> bytes:
    """A warcinfo record like the one crawlers write first."""
    return _record(
        "warcinfo",
        None,
        b"software: mmrecipe-tests\r\nformat: WARC File Format 1.0\r\n",
        {"Content-Type": "application/warc-fields"},
    )


def warc_bytes(responses: Iterable[HttpResponse], gzipped: bool = True) -> bytes:
    """A whole WARC file: a warcinfo record then one response record per exchange."""
    records = [warcinfo_record(), *(response_record(r) for r in responses)]
    if gzipped:
        return b"".join(gzip.compress(r, mtime=0) for r in records)
    return b"".join(records)
