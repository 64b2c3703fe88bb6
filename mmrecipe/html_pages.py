"""Scans of a shard's HTML pages: one result per page, in the shard's order; None for a page that cannot be read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mmrecipe.engine import Shard, read_shard
from mmrecipe.storage import Storage
from mmrecipe.warc_index import RecordReader

T = TypeVar("T")
PAGE_COLUMNS = ["warc_path", "warc_offset", "warc_length", "target_uri"]
PageScanner = Callable[[bytes, str, Any, int], T]  # (payload, page URL, HTTP headers, record position) -> scan


def scan_pages(lake: Storage, shard: Shard, scan: PageScanner[T]) -> list[T | None]:
    """Each page of `shard` read from its WARC and passed to `scan`; an unreadable record gives None."""
    pages = read_shard(lake, shard, PAGE_COLUMNS).to_pylist()
    scans: list[T | None] = []
    with RecordReader(lake) as reader:
        for i, page in enumerate(pages):
            try:
                rec = reader.read(page["warc_path"], page["warc_offset"], page["warc_length"])
            except ValueError:
                scans.append(None)
                continue
            scans.append(scan(rec.payload, page["target_uri"] or "", rec.http_headers, shard.start + i))
    return scans
