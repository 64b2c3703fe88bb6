"""The raw_crawl index of a drop, read back: the records each downstream stage takes as input.

Each stage selects its inputs by kind (HTML pages, images, audio, video) with the same predicate
that its conservation check uses, so `in` is defined once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from mmrecipe.stage_output import StageOutput, StageWriter, committed_parts, is_committed
from mmrecipe.storage import Storage, retried
from mmrecipe.warc_index import INDEX_SCHEMA, WarcLimits, index_warc

HTML_MIME = ("text/html", "application/xhtml+xml")
AUDIO_EXTRA_MIME = ("application/ogg",)
RAW_CRAWL = "raw_crawl"


def kind_filter(kind: str) -> pc.Expression:
    response = pc.field("record_type") == "response"
    mime = pc.field("mime_type")
    if kind == "html":
        return response & mime.isin(list(HTML_MIME))
    if kind == "image":
        return response & pc.starts_with(mime, "image/")
    if kind == "audio":
        return response & (pc.starts_with(mime, "audio/") | mime.isin(list(AUDIO_EXTRA_MIME)))
    if kind == "video":
        return response & pc.starts_with(mime, "video/")
    raise ValueError(f"unknown record kind {kind!r}: use html, image, audio or video")


def index_drop(
    source: Storage, lake: Storage, drop: str, warc_files: Sequence[str], limits: WarcLimits | None = None
) -> StageOutput:
    """The raw_crawl index of a drop's WARC files (at `source`/<drop>/<name>), published to the lake."""
    with StageWriter(lake, RAW_CRAWL, drop, INDEX_SCHEMA) as out:
        for name in warc_files:
            for row, reason, detail in index_warc(source, drop, source.uri(drop, name), name, limits or WarcLimits()):
                if reason:
                    out.reject(row, reason, detail)
                else:
                    out.keep(row)
        return out.close()


def is_indexed(storage: Storage, drop: str) -> bool:
    """Whether the raw_crawl index of `drop` has been committed."""
    return is_committed(storage, RAW_CRAWL, drop)


def read_records(storage: Storage, drop: str, kind: str, columns: list[str] | None = None) -> pa.Table:
    """The raw_crawl rows of `drop` of one kind, in file and offset order."""
    parts = committed_parts(storage, RAW_CRAWL, drop)
    keys = ["warc_path", "warc_offset"]
    read = None if columns is None else list(dict.fromkeys([*columns, *keys]))

    def scan() -> pa.Table:
        return storage.dataset(parts).to_table(filter=kind_filter(kind), columns=read)

    table = retried(scan)
    table = table.sort_by([(k, "ascending") for k in keys])
    return table if columns is None else table.select(columns)


def coverage_problems(spans: pa.Table, sizes: Mapping[str, int]) -> list[str]:
    """How the (warc_path, warc_offset, warc_length) spans fail to tile each file exactly once."""
    problems: list[str] = []
    rows = sorted(
        zip(
            spans["warc_path"].to_pylist(),
            spans["warc_offset"].to_pylist(),
            spans["warc_length"].to_pylist(),
            strict=True,
        )
    )
    by_file: dict[str, list[tuple[int, int]]] = {}
    for path, off, length in rows:
        by_file.setdefault(path, []).append((off, length or 0))
    for path, size in sorted(sizes.items()):
        pos = 0
        for off, length in by_file.pop(path, []):
            if off != pos:
                problems.append(f"{path}: bytes {pos}..{off} {'uncovered' if off > pos else 'covered twice'}")
            pos = max(pos, off + length)
        if pos != size:
            problems.append(f"{path}: spans end at {pos}, file has {size} bytes")
    problems += [f"{path}: indexed but not in the drop" for path in by_file]
    return problems
