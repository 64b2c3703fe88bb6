"""The three shard passes of deduped_images, the parts they stage, and what each returns to the driver.

A drop's image records are cut into shards (`ImageSpan`: consecutive raw_crawl image rows, with
the caption the driver chose for each). The driver runs:

1. `analyse_shard` on every shard: HTTP status, robots opt-out (of a referencing page, or the
   image's own `X-Robots-Tag`), MIME, then `analyse_image` (header filters, pHash), and the NSFW
   score when that filter is on. It stages one row per record (outcome or features) and returns
   only the candidates' (position, record id, byte hash, pHash): never pixels.
2. `normalize_shard` on the shards holding kept images and close near duplicates (the driver's
   decisions): decode again and normalize; it stages the JPEGs and returns pixel hashes or rejects.
3. `publish_shard` on every shard: kept rows (with their staged JPEGs), drops and rejects, all in
   record order, plus the shard's pHash-index entries; it reads staged parts, never payloads.

Byte-identical payloads within a shard are analysed once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from mmrecipe.images import phash_index
from mmrecipe.images.captions import Caption
from mmrecipe.images.decoding import ImageRejected, NormalizedImage
from mmrecipe.images.image_analysis import (
    ImageFiltered,
    ImageStageConfig,
    analyse_image,
    map_in_order,
    normalize_image,
    size_bucket,
    thumbnail,
)
from mmrecipe.images.phash import phash_batch, to_int64
from mmrecipe.opt_out import OPT_OUT_REASON, opts_out_of_images, robots_directives
from mmrecipe.stage_output import PROVENANCE_COLUMNS
from mmrecipe.storage import Storage
from mmrecipe.warc_index import RecordReader, normalize_uri

STEPS = ("read", "opt_out", "filters", "nsfw", "phash", "dedup", "normalize")
ANALYSED_SCHEMA = pa.schema(
    [
        pa.field("pos", pa.int64(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),  # candidate, dropped or rejected
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("phash", pa.int64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("format", pa.string()),
    ]
)
NORMALIZED_SCHEMA = pa.schema(
    [
        pa.field("pos", pa.int64(), nullable=False),
        pa.field("jpeg", pa.binary(), nullable=False),
        pa.field("pixel_sha256", pa.string(), nullable=False),
        pa.field("norm_width", pa.int32(), nullable=False),
        pa.field("norm_height", pa.int32(), nullable=False),
        pa.field("n_frames", pa.int32(), nullable=False),
        pa.field("nsfw_score", pa.float32()),
    ]
)
Scorer = Any  # NsfwScorer-like: .score(PIL image) -> float


class RowSink(Protocol):
    """Where a shard's kept rows, drops and rejects go (a stage writer or a shard part writer)."""

    def keep(self, row: Mapping[str, Any]) -> None: ...
    def drop(self, prov: Mapping[str, Any], reason: str, detail: str = "") -> None: ...
    def reject(self, prov: Mapping[str, Any], reason: str, detail: str = "") -> None: ...


@dataclass
class ImageSpan:
    """One shard: consecutive image records of a drop from position `first`, with their captions."""

    index: int
    first: int
    rows: list[dict[str, Any]]
    captions: list[Caption]


@dataclass
class AnalysedShard:
    """What pass 1 of a shard returns: where it staged its outcomes, and its candidates for dedup."""

    analysed_uri: str
    normalized_uri: str | None  # NSFW on: every candidate is normalized in pass 1
    candidates: list[phash_index.Candidate] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # drop positions of the candidates
    pixels: dict[int, str] = field(default_factory=dict)  # pos -> pixel hash, for normalized candidates
    outcomes: Counter[str] = field(default_factory=Counter)  # "dropped_<reason>" / "rejected_<reason>"
    seconds: float = 0.0


def _normalized_row(pos: int, nimg: NormalizedImage, score: float | None) -> dict[str, Any]:
    return {
        "pos": pos,
        "jpeg": nimg.jpeg,
        "pixel_sha256": nimg.pixel_sha256,
        "norm_width": nimg.size[0],
        "norm_height": nimg.size[1],
        "n_frames": nimg.header.n_frames,
        "nsfw_score": score,
    }


def _screen(span: ImageSpan, i: int, reader: RecordReader, cfg: ImageStageConfig) -> bytes | tuple[str, str, str]:
    """The payload of record `i` of the span, or its (outcome, reason, detail) if it goes no further."""
    row, caption = span.rows[i], span.captions[i]
    try:
        rec = reader.read(row["warc_path"], row["warc_offset"], row["warc_length"])
    except ValueError as e:
        return "rejected", "unreadable_record", str(e)
    if rec.http_status is None or not 200 <= rec.http_status < 300:
        return "rejected", "http_error", f"HTTP status {rec.http_status} for an image/* response"
    if caption.opt_out:
        return "dropped", OPT_OUT_REASON, f"referenced by {caption.opt_out_page} (noimageai/noai)"
    if opts_out_of_images(robots_directives(rec.http_headers)):
        return "dropped", OPT_OUT_REASON, f"X-Robots-Tag: {rec.http_headers.get('x-robots-tag', '')}"
    mime_drop = cfg.filters.mime_drop(row["mime_type"])
    if mime_drop:
        return "dropped", *mime_drop
    return rec.payload


def analyse_shard(
    storage: Storage, staging: str, span: ImageSpan, cfg: ImageStageConfig, scorer: Scorer | None
) -> AnalysedShard:
    """Pass 1 over one shard: stage one row per record at `<staging>/analysed.parquet`."""
    started = time.perf_counter()
    rows: dict[int, dict[str, Any]] = {}
    normalized: list[dict[str, Any]] = []
    greys: dict[int, np.ndarray] = {}
    copies: list[tuple[int, int]] = []  # (i, i of the first record of the shard with the same bytes)

    def to_analyse(reader: RecordReader) -> Any:
        seen: dict[str, int] = {}
        for i, row in enumerate(span.rows):
            screened = _screen(span, i, reader, cfg)
            if isinstance(screened, tuple):
                rows[i] = dict(zip(("outcome", "reason", "detail"), screened, strict=True))
            elif row["payload_sha256"] in seen:
                copies.append((i, seen[row["payload_sha256"]]))
            else:
                seen[row["payload_sha256"]] = i
                yield i, screened

    def work(item: tuple[int, bytes]) -> tuple[Any, np.ndarray, float | None]:
        result = analyse_image(item[1], cfg, normalize_now=scorer is not None)  # NSFW needs pixels now
        norm = result.normalized
        return result, result.grey, (scorer.score(norm.image) if norm is not None else None)

    with RecordReader(storage) as reader:
        for (i, _), future in map_in_order(work, to_analyse(reader), cfg.workers):
            try:
                result, grey, score = future.result()
            except ImageFiltered as d:
                rows[i] = {"outcome": "dropped", "reason": d.reason, "detail": d.detail}
                continue
            except ImageRejected as e:
                rows[i] = {"outcome": "rejected", "reason": e.reason, "detail": e.detail}
                continue
            h = result.header
            rows[i] = {"outcome": "candidate", "sha256": span.rows[i]["payload_sha256"]}
            rows[i] |= {"width": h.width, "height": h.height, "format": h.format}
            greys[i] = grey
            if result.normalized is not None:
                normalized.append(_normalized_row(i, result.normalized, score))
    for i, first in copies:  # same bytes: same outcome, features and normalization
        rows[i] = dict(rows[first])
        if first in greys:
            greys[i] = greys[first]
        normalized += [{**n, "pos": i} for n in normalized if n["pos"] == first]
    for n in normalized:
        if n["nsfw_score"] is not None and n["nsfw_score"] >= cfg.nsfw_threshold:
            greys.pop(n["pos"])
            detail = f"NudeNet score {n['nsfw_score']:.3f} >= {cfg.nsfw_threshold}"
            rows[n["pos"]] = {"outcome": "dropped", "reason": "nsfw", "detail": detail}
    order = sorted(greys)
    hashes = phash_batch(np.stack([greys[i] for i in order])).tolist() if order else []
    for i, h in zip(order, hashes, strict=True):
        rows[i]["phash"] = int(to_int64(h))
    return _stage_analysed(storage, staging, span, rows, normalized, order, time.perf_counter() - started)


def _stage_analysed(
    storage: Storage,
    staging: str,
    span: ImageSpan,
    rows: dict[int, dict[str, Any]],
    normalized: list[dict[str, Any]],
    order: list[int],
    seconds: float,
) -> AnalysedShard:
    table = pa.Table.from_pylist([{**rows[i], "pos": span.first + i} for i in sorted(rows)], schema=ANALYSED_SCHEMA)
    result = AnalysedShard(f"{staging}/analysed.parquet", None, seconds=seconds)
    storage.write_table(result.analysed_uri, table)
    candidates = set(order)
    kept_norm = [{**n, "pos": span.first + n["pos"]} for n in normalized if n["pos"] in candidates]
    if kept_norm:
        result.normalized_uri = f"{staging}/normalized-0.parquet"
        kept_norm.sort(key=lambda n: n["pos"])
        storage.write_table(result.normalized_uri, pa.Table.from_pylist(kept_norm, schema=NORMALIZED_SCHEMA))
        result.pixels = {n["pos"]: n["pixel_sha256"] for n in kept_norm}
    for i in order:
        row = span.rows[i]
        result.candidates.append(phash_index.Candidate(row["record_id"], rows[i]["sha256"], rows[i]["phash"]))
        result.positions.append(span.first + i)
    result.outcomes = Counter(f"{r['outcome']}_{r['reason']}" for r in rows.values() if r["outcome"] != "candidate")
    return result


@dataclass
class NormalizedShard:
    """What pass 2 of a shard returns: pixel hashes of what it normalized, and the images that failed."""

    normalized_uri: str | None
    pixels: dict[int, str] = field(default_factory=dict)
    failed: dict[int, tuple[str, str]] = field(default_factory=dict)  # pos -> (reason, detail)


def normalize_shard(
    storage: Storage, uri: str, span: ImageSpan, positions: Sequence[int], cfg: ImageStageConfig
) -> NormalizedShard:
    """Pass 2: normalize the images at drop `positions` of this shard and stage their JPEGs at `uri`."""
    result, staged = NormalizedShard(None), []
    with RecordReader(storage) as reader:

        def payloads() -> Any:
            for pos in positions:
                row = span.rows[pos - span.first]
                yield pos, reader.read(row["warc_path"], row["warc_offset"], row["warc_length"]).payload

        for (pos, _), future in map_in_order(lambda item: normalize_image(item[1], cfg), payloads(), cfg.workers):
            try:
                staged.append(_normalized_row(pos, future.result(), None))
            except ImageRejected as e:
                result.failed[pos] = (e.reason, e.detail)
    if staged:
        result.normalized_uri = uri
        storage.write_table(uri, pa.Table.from_pylist(staged, schema=NORMALIZED_SCHEMA))
        result.pixels = {n["pos"]: n["pixel_sha256"] for n in staged}
    return result


@dataclass
class PublishedImages:
    """What pass 3 of a shard returns: its pHash-index entries and its kept images' histograms."""

    entries: pa.Table
    formats: Counter[str] = field(default_factory=Counter)
    sizes: Counter[str] = field(default_factory=Counter)
    caption_sources: Counter[str] = field(default_factory=Counter)
    animated: int = 0
    thumbnails: list[dict[str, Any]] = field(default_factory=list)
    preview: list[dict[str, Any]] = field(default_factory=list)


def publish_shard(
    storage: Storage,
    span: ImageSpan,
    analysed_uri: str,
    normalized_uris: Sequence[str],
    decisions: Mapping[int, phash_index.Decision],
    late: Mapping[int, tuple[str, str]],
    out: RowSink,
) -> PublishedImages:
    """Pass 3: the shard's kept rows, drops and rejects in record order, from staged parts and `decisions`."""
    analysed = {r["pos"]: r for r in storage.read_table(analysed_uri).to_pylist()}
    norm = {r["pos"]: r for uri in normalized_uris for r in storage.read_table(uri).to_pylist()}
    entries, result = [], PublishedImages(phash_index.ENTRY_SCHEMA.empty_table())
    for i, row in enumerate(span.rows):
        pos, a = span.first + i, analysed[span.first + i]
        outcome, reason, detail = (a["outcome"], a["reason"], a["detail"] or "")
        if pos in late:
            outcome, (reason, detail) = "rejected", late[pos]
        if outcome != "candidate":
            (out.drop if outcome == "dropped" else out.reject)(row, reason, detail)
            continue
        d, n = decisions[pos], norm.get(pos)
        entries.append(_entry(row, a, n, d))
        if not d.kept:
            where = f" in drop {d.owner_drop}" if d.owner_drop else ""
            out.drop(row, d.reason or "near_duplicate", f"of {d.owner}{where}, hamming {d.hamming}")
            continue
        assert n is not None, f"kept image {row['record_id']} was not normalized"
        kept = _kept_row(row, span.captions[i], a, n, d.cluster)
        out.keep(kept)
        _account(result, kept)
    result.entries = pa.Table.from_pylist(entries, schema=phash_index.ENTRY_SCHEMA)
    return result


def _entry(row: Mapping[str, Any], a: Mapping[str, Any], n: Mapping[str, Any] | None, d: Any) -> dict[str, Any]:
    return {
        **{c: row[c] for c in PROVENANCE_COLUMNS},
        "url": normalize_uri(row["target_uri"]),
        "sha256": a["sha256"],
        "pixel_sha256": n["pixel_sha256"] if n else None,
        "phash": a["phash"],
        "kept": d.kept,
        "dedup_cluster": d.cluster,
        "reason": d.reason,
        "hamming": d.hamming,
    }


def _kept_row(
    row: Mapping[str, Any], cap: Caption, a: Mapping[str, Any], n: Mapping[str, Any], cluster: str
) -> dict[str, Any]:
    return {
        **{c: row[c] for c in PROVENANCE_COLUMNS},
        "url": normalize_uri(row["target_uri"]),
        "page_url": cap.page_url,
        "width": a["width"],
        "height": a["height"],
        "format": a["format"],
        "mime_type": row["mime_type"],
        "bytes": int(row["payload_length"] or 0),
        "n_frames": n["n_frames"],  # counted when normalized (pass 1 only asks "animated?")
        "sha256": a["sha256"],
        "pixel_sha256": n["pixel_sha256"],
        "phash": a["phash"],
        "dedup_cluster": cluster,
        "caption": cap.caption,
        "caption_source": cap.source,
        "nsfw_score": n["nsfw_score"],
        "norm_width": n["norm_width"],
        "norm_height": n["norm_height"],
        "normalized_jpeg": n["jpeg"],
    }


def _account(result: PublishedImages, kept: dict[str, Any]) -> None:
    result.formats[kept["format"]] += 1
    result.sizes[size_bucket(kept["width"], kept["height"])] += 1
    result.caption_sources[kept["caption_source"]] += 1
    result.animated += int(kept["n_frames"] > 1)
    if len(result.thumbnails) < 4:
        result.thumbnails.append(
            {**{k: kept[k] for k in ("url", "caption")}, "thumb": thumbnail(kept["normalized_jpeg"])}
        )
    if len(result.preview) < 5:
        result.preview.append(kept)
