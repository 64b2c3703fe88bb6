"""Decoded HTML text: payload bytes turned into a str using HTTP charset, then <meta charset>, then detection.

A declared charset is only trusted if the bytes decode under it without error; a page whose header
says UTF-8 but whose bytes are Latin-1 falls through to the next source instead of producing
mojibake. Two browser conventions are followed: a byte-order mark wins over everything, and the
labels latin-1/iso-8859-1/ascii mean windows-1252 (WHATWG encoding standard). A single-byte
declaration on bytes that are valid, non-ASCII UTF-8 is treated as a lie too (the UTF-8 reading
is the only one without mojibake).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from charset_normalizer import from_bytes

_META_SCAN_BYTES = 4096
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE)
_HTTP_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE)
_WINDOWS_1252_LABELS = {"latin_1", "iso8859_1", "ascii", "cp1252"}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


@dataclass(frozen=True)
class DecodedHtml:
    """An HTML page as text, with the codec used and where it came from (bom/http/meta/detected/fallback)."""

    text: str
    charset: str
    source: str


def canonical_codec(label: str | None) -> str | None:
    """The Python codec for a charset label, with latin-1/ascii read as windows-1252; None if unknown."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    return "cp1252" if name.replace("-", "_") in _WINDOWS_1252_LABELS else name


def http_charset(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type header, if any."""
    m = _HTTP_CHARSET.search(content_type or "")
    return m.group(1) if m else None


def meta_charset(payload: bytes) -> str | None:
    """The charset declared by `<meta charset>` or `<meta http-equiv=Content-Type>` near the top of the page."""
    m = _META_CHARSET.search(payload[:_META_SCAN_BYTES])
    return m.group(1).decode("ascii", "replace") if m else None


def _is_single_byte(codec: str) -> bool:
    return codec == "cp1252" or codec.startswith(("iso8859", "cp12", "koi8", "mac_"))


def _strict(payload: bytes, codec: str) -> str | None:
    try:
        return payload.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def decode_html(payload: bytes, content_type: str | None = None) -> DecodedHtml:
    """The page's text: BOM, then HTTP charset, then <meta charset>, then charset detection."""
    for bom, codec in _BOMS:
        if payload.startswith(bom) and (text := _strict(payload, codec)) is not None:
            return DecodedHtml(text.lstrip("\ufeff"), codec, "bom")
    for label, source in ((http_charset(content_type), "http"), (meta_charset(payload), "meta")):
        codec = canonical_codec(label)
        if codec is None or (text := _strict(payload, codec)) is None:
            continue
        if _is_single_byte(codec) and not payload.isascii() and (utf8 := _strict(payload, "utf-8")) is not None:
            return DecodedHtml(utf8, "utf-8", "detected")
        return DecodedHtml(text, codec, source)
    if (utf8 := _strict(payload, "utf-8")) is not None:
        return DecodedHtml(utf8, "utf-8", "detected")
    best = from_bytes(payload).best()
    if best is not None and best.encoding:
        return DecodedHtml(str(best), best.encoding, "detected")
    return DecodedHtml(payload.decode("utf-8", errors="replace"), "utf-8", "fallback")
