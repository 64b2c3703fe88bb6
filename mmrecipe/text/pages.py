"""Crawled HTML pages as text: a raw_crawl row read by offset, decoded, checked for opt-out and extracted."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmrecipe.engine.steps import DROPPED, REJECTED, Outcome
from mmrecipe.opt_out import OPT_OUT_REASON, ROBOTS_META_NAMES, opts_out_of_images, opts_out_of_text, robots_directives
from mmrecipe.text.decoding import decode_html
from mmrecipe.text.extraction import DEFAULT_MAX_DEPTH, HtmlTooDeep, extract_text
from mmrecipe.warc_index import RecordReader

_ROBOTS_META = re.compile(  # a <meta name=...> that may carry robots directives (checked on the decoded text)
    r"<meta[^>]*name\s*=\s*[\"']?\s*(?:" + "|".join(sorted(ROBOTS_META_NAMES)) + r")\b", re.IGNORECASE
)


@dataclass
class Page:
    """The main-content text of one HTML response and what was learned while reading it."""

    text: str
    charset: str
    charset_source: str
    noimageai: bool


DEFAULT_MAX_PAGE_BYTES = 8 << 20  # decoded HTML body; larger pages cost seconds and GBs to extract


def read_page(
    reader: RecordReader,
    row: Mapping[str, Any],
    extractor: str,
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
    max_html_depth: int = DEFAULT_MAX_DEPTH,
) -> Page | Outcome:
    """The page of a raw_crawl HTML row, or why it cannot be used (HTTP status, unreadable, too large, opt-out…)."""
    status = row.get("http_status")
    if status != 200:
        return Outcome(DROPPED, "http_status", f"HTTP {status}")
    try:
        record = reader.read(row["warc_path"], row["warc_offset"], row["warc_length"])
    except (ValueError, OSError) as e:
        return Outcome(REJECTED, "unreadable_record", str(e))
    if not record.payload:
        return Outcome(REJECTED, "empty_payload", "HTTP 200 response without a body")
    if len(record.payload) > max_page_bytes:
        return Outcome(REJECTED, "page_too_large", f"{len(record.payload)} bytes > max_page_bytes {max_page_bytes}")
    decoded = decode_html(record.payload, record.http_headers.get("content-type"))
    html = record.payload if _ROBOTS_META.search(decoded.text) else None  # parse the page only if it may opt out
    directives = robots_directives(record.http_headers, html, decoded.charset)
    if opts_out_of_text(directives):
        return Outcome(DROPPED, OPT_OUT_REASON, "robots directives: " + ", ".join(sorted(directives)))
    try:
        text = extract_text(decoded.text, extractor, max_html_depth)
    except HtmlTooDeep as e:
        return Outcome(REJECTED, "html_too_deep", str(e))
    except Exception as e:  # resiliparse/trafilatura raise their own parser errors on hostile markup
        return Outcome(REJECTED, "extraction_failed", f"{extractor}: {type(e).__name__}: {e}")
    if not text.strip():
        return Outcome(DROPPED, "empty_text", f"{extractor} found no main-content text")
    return Page(text, decoded.charset, decoded.source, opts_out_of_images(directives))
