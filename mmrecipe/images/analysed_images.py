"""What the first shard passes of deduped_images learn about a drop's images, and the parts they stage.

The driver (`mmrecipe.images.stage`) runs four passes on the engine; this module holds the first two
and what they share with the others (`images.kept_images` holds passes 2 and 3):

0. `caption_pass` on the shards of the drop's HTML pages: their image references and opt-outs, staged
   as one refs part per shard; then `stage_captions` on every shard of image records picks each record's
   caption and opt-out from the references to its URL (`captions.CaptionIndex`) and stages them.
1. `analyse_pass` on every shard of image records: HTTP status, robots opt-out (of a referencing
   page, or the image's own `X-Robots-Tag`), MIME, then `analyse_image` (header filters, pHash), and
   the NSFW score when that filter is on. It stages one row per record (outcome or features) and
   returns only the candidates' positions, pHashes and byte-hash keys as arrays: never pixels.

A record's position is its row in the drop's sorted image records (`shard.start + i`). Byte-identical
payloads within a shard are analysed once. A record that kills its worker is rejected `worker_crashed`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmrecipe.engine import WORKER_CRASHED, Shard, StepStats, read_shard, worker_cached
from mmrecipe.html_pages import PageScanner, scan_pages
from mmrecipe.images.captions import Caption, CaptionIndex, ImageRef, canonical_url, scan_page
from mmrecipe.images.decoding import ImageRejected, NormalizedImage
from mmrecipe.images.image_analysis import (
    ImageFiltered,
    ImageStageConfig,
    analyse_image,
    map_in_order,
)
from mmrecipe.images.image_filters import NsfwScorer
from mmrecipe.images.phash import phash_batch, to_int64
from mmrecipe.images.phash_bands import sha_keys
from mmrecipe.opt_out import OPT_OUT_REASON, opts_out_of_images, robots_directives
from mmrecipe.storage import Storage
from mmrecipe.warc_index import RecordReader, normalize_uri

ANALYSED_SCHEMA = pa.schema(
    [
        pa.field("pos", pa.int64(), nullable=False),
        pa.field("record_id", pa.string(), nullable=False),
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
CAPTION_SCHEMA = pa.schema(
    [
        pa.field("caption", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("page_url", pa.string()),
        pa.field("opt_out", pa.bool_(), nullable=False),
        pa.field("opt_out_page", pa.string()),
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
REF_SCHEMA = pa.schema(
    [
        pa.field("image_url", pa.string(), nullable=False),
        pa.field("page_url", pa.string(), nullable=False),
        pa.field("page_order", pa.int64(), nullable=False),
        pa.field("position", pa.int64(), nullable=False),
        pa.field("alt", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("surrounding", pa.string(), nullable=False),
        pa.field("opt_out", pa.bool_(), nullable=False),
    ]
)
Scorer = Any  # NsfwScorer-like: .score(PIL image) -> float


@dataclass(frozen=True)
class PageRefs:
    """What pass 0 staged for a shard of HTML pages: its image references' part (None: none) and page counts."""

    uri: str | None
    pages: int
    opted_out: int
    unreadable: int


def caption_pass(
    lake: Storage, staging: str, shard: Shard, scan: PageScanner = scan_page, schema: pa.Schema = REF_SCHEMA
) -> PageRefs:
    """Pass 0 over a shard of the drop's HTML pages: stage every media reference of its pages, in page order.

    `scan` gives a page's (opt-out, references), e.g. the video stage's `<video>` scanner with its `schema`."""
    scans = scan_pages(lake, shard, scan)
    refs = [asdict(ref) for scan in scans if scan is not None for ref in scan[1]]
    uri = f"{staging}/refs-{shard.span}.parquet" if refs else None
    if uri:
        lake.write_table(uri, pa.Table.from_pylist(refs, schema=schema))
    opted_out = sum(int(scan[0]) for scan in scans if scan is not None)
    return PageRefs(uri, len(scans), opted_out, sum(scan is None for scan in scans))


def caption_pass_crashed(lake: Storage, staging: str, shard: Shard, error: str) -> PageRefs:
    """A shard of pages that kills its worker process: every page counted as unreadable."""
    return PageRefs(None, shard.rows, 0, shard.rows)


@dataclass(frozen=True)
class ImagePass:
    """What every shard of one run needs (picklable): the lake, the stage config and the NSFW scorer."""

    lake: Storage
    cfg: ImageStageConfig
    scorer: Scorer | None = None  # None: NudeNet, loaded once per worker, when `cfg.nsfw`

    def nsfw(self) -> Scorer | None:
        if self.scorer is not None or not self.cfg.nsfw:
            return self.scorer
        path = self.cfg.nsfw_model_path
        return worker_cached(("nsfw", path), lambda: NsfwScorer(path))


@dataclass(frozen=True)
class CaptionedShard(Shard):
    """A shard of image records, with the folder where its passes stage their parts and its captions."""

    staging: str = ""

    @property
    def folder(self) -> str:
        return f"{self.staging}/{self.span}"


@dataclass(frozen=True)
class CaptionJob:
    """The task that stages the captions of one shard of image records from the drop's staged page references."""

    lake: Storage
    shard: CaptionedShard
    refs: tuple[str, ...]  # the refs parts of pass 0
    surrounding_text: bool


def stage_captions(job: CaptionJob) -> None:
    """Stage the best caption and the opt-out of each of the shard's records, in record order, from the
    references to its URL on every page of the drop (read filtered to the shard's URLs)."""
    urls = [normalize_uri(u) for u in read_shard(job.lake, job.shard, ["target_uri"])["target_uri"].to_pylist()]
    index = CaptionIndex(surrounding_text=job.surrounding_text)
    index.add_refs(ImageRef(**r) for r in read_refs(job.lake, job.refs, "image_url", urls))
    captions = [asdict(index.caption_for(u)) for u in urls]
    table = pa.Table.from_pylist(captions, schema=CAPTION_SCHEMA)
    job.lake.write_table(f"{job.shard.staging}/captions-{job.shard.index:05d}.parquet", table)


def read_refs(lake: Storage, uris: Sequence[str], column: str, urls: Sequence[str | None]) -> list[dict[str, Any]]:
    """The rows of staged page references (pass 0's parts) whose `column` is one of `urls` (canonicalized here)."""
    wanted, rows = pa.array(sorted({canonical_url(u) or "" for u in urls}), pa.string()), []
    for uri in uris:
        table = lake.read_table(uri)
        rows += table.filter(pc.is_in(table[column], value_set=wanted)).to_pylist()
    return rows


def read_staged(
    lake: Storage, uris: Sequence[str], keys: set[int], columns: list[str], key: str = "pos"
) -> list[dict[str, Any]]:
    """The rows of staged parts whose `key` column (e.g. a record's drop position) is one of `keys`."""
    wanted, rows = pa.array(sorted(keys), pa.int64()), []
    for uri in uris:
        table = lake.read_table(uri, columns)
        rows += table.filter(pc.is_in(table[key], value_set=wanted)).to_pylist()
    return rows


def read_captions(lake: Storage, shard: CaptionedShard) -> list[Caption]:
    """The staged captions of a shard's records (a split shard's slice of its planned shard's)."""
    table = lake.read_table(f"{shard.staging}/captions-{shard.index:05d}.parquet")
    return [Caption(**c) for c in table.slice(shard.start - shard.base, shard.rows).to_pylist()]


def shard_records(job: ImagePass, shard: CaptionedShard) -> tuple[list[dict[str, Any]], list[Caption]]:
    """A shard's image records (raw_crawl rows) and their staged captions, in record order."""
    return read_shard(job.lake, shard).to_pylist(), read_captions(job.lake, shard)


@dataclass
class AnalysedShard:
    """What pass 1 of a shard returns: where it staged its outcomes, and its candidates for dedup (as arrays)."""

    shard: CaptionedShard
    analysed_uri: str
    normalized_uri: str | None  # NSFW on: every candidate is normalized in pass 1
    candidates: int = 0
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # the candidates' drop positions
    phashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    byte_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # `sha_keys` of their bytes
    steps: dict[str, StepStats] = field(default_factory=dict)


def normalized_row(pos: int, nimg: NormalizedImage, score: float | None) -> dict[str, Any]:
    """A staged row of a normalized image (`NORMALIZED_SCHEMA`)."""
    return {
        "pos": pos,
        "jpeg": nimg.jpeg,
        "pixel_sha256": nimg.pixel_sha256,
        "norm_width": nimg.size[0],
        "norm_height": nimg.size[1],
        "n_frames": nimg.header.n_frames,
        "nsfw_score": score,
    }


def _screen(
    row: Mapping[str, Any], caption: Caption, reader: RecordReader, cfg: ImageStageConfig
) -> bytes | tuple[str, str, str]:
    """The payload of a record, or its (outcome, reason, detail) if it goes no further."""
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


def analyse_pass(job: ImagePass, shard: CaptionedShard) -> AnalysedShard:
    """Pass 1 over one shard: stage one row per record at `<shard folder>/analysed.parquet`."""
    started, cfg, scorer = time.perf_counter(), job.cfg, job.nsfw()
    records, captions = shard_records(job, shard)
    rows: dict[int, dict[str, Any]] = {}
    normalized: list[dict[str, Any]] = []
    greys: dict[int, np.ndarray] = {}
    copies: list[tuple[int, int]] = []  # (i, i of the first record of the shard with the same bytes)
    step_of: dict[int, str] = {}  # i -> the step that decided a dropped or rejected record
    seconds = Counter[str]()

    def to_analyse(reader: RecordReader) -> Any:
        seen: dict[str, int] = {}
        for i, row in enumerate(records):
            screen_started = time.perf_counter()
            screened = _screen(row, captions[i], reader, cfg)
            seconds["screen"] += time.perf_counter() - screen_started
            if isinstance(screened, tuple):
                step_of[i] = "screen"
                rows[i] = dict(zip(("outcome", "reason", "detail"), screened, strict=True))
            elif row["payload_sha256"] in seen:
                copies.append((i, seen[row["payload_sha256"]]))
            else:
                seen[row["payload_sha256"]] = i
                yield i, screened

    def work(item: tuple[int, bytes]) -> tuple[Any, np.ndarray, float | None]:
        result = analyse_image(item[1], cfg, normalize_now=scorer is not None)  # NSFW needs pixels now
        if result.normalized is None:
            return result, result.grey, None
        score_started = time.perf_counter()
        score = scorer.score(result.normalized.image)
        seconds["nsfw"] += time.perf_counter() - score_started  # thread seconds
        return result, result.grey, score

    with RecordReader(job.lake) as reader:
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
            rows[i] = {"outcome": "candidate", "sha256": records[i]["payload_sha256"]}
            rows[i] |= {"width": h.width, "height": h.height, "format": h.format}
            greys[i] = grey
            if result.normalized is not None:
                normalized.append(normalized_row(i, result.normalized, score))
    for i, first in copies:  # same bytes: same outcome, features and normalization
        rows[i] = dict(rows[first])
        if first in step_of:
            step_of[i] = step_of[first]
        if first in greys:
            greys[i] = greys[first]
        normalized += [{**n, "pos": i} for n in normalized if n["pos"] == first]
    for n in normalized:
        if n["nsfw_score"] is not None and n["nsfw_score"] >= cfg.nsfw_threshold:
            greys.pop(n["pos"])
            detail = f"NudeNet score {n['nsfw_score']:.3f} >= {cfg.nsfw_threshold}"
            rows[n["pos"]] = {"outcome": "dropped", "reason": "nsfw", "detail": detail}
            step_of[n["pos"]] = "nsfw"
    order = sorted(greys)
    hashes = phash_batch(np.stack([greys[i] for i in order])).tolist() if order else []
    for i, h in zip(order, hashes, strict=True):
        rows[i]["phash"] = int(to_int64(h))
    seconds["analyse"] = time.perf_counter() - started - seconds["screen"] - seconds["nsfw"]
    steps = _steps(rows, step_of, seconds, ("screen", "analyse", "nsfw") if scorer else ("screen", "analyse"))
    return _stage_analysed(job.lake, shard, records, rows, normalized, order, steps)


def _steps(
    rows: Mapping[int, Mapping[str, Any]],
    step_of: Mapping[int, str],
    seconds: Mapping[str, float],
    names: Sequence[str],
) -> dict[str, StepStats]:
    """Pass 1's declared steps: records seen, seconds, and the drops and rejects each decided."""
    steps, alive = {name: StepStats(seconds=seconds.get(name, 0.0)) for name in names}, len(rows)
    for i, r in rows.items():
        if r["outcome"] != "candidate":
            step = steps[step_of.get(i, "analyse")]  # decode errors and header filters: analyse
            (step.dropped if r["outcome"] == "dropped" else step.rejected)[r["reason"]] += 1
    for step in steps.values():
        step.seen, alive = alive, alive - sum(step.dropped.values()) - sum(step.rejected.values())
    return steps


def analyse_crashed(job: ImagePass, shard: CaptionedShard, error: str) -> AnalysedShard:
    """The pass-1 result of a single record that kills its worker: staged as a `worker_crashed` reject."""
    records = read_shard(job.lake, shard).to_pylist()
    rows = {i: {"outcome": "rejected", "reason": WORKER_CRASHED, "detail": error} for i in range(len(records))}
    steps = _steps(rows, dict.fromkeys(rows, "screen"), {}, ("screen",))
    return _stage_analysed(job.lake, shard, records, rows, [], [], steps)


def _stage_analysed(
    lake: Storage,
    shard: CaptionedShard,
    records: list[dict[str, Any]],
    rows: dict[int, dict[str, Any]],
    normalized: list[dict[str, Any]],
    order: list[int],
    steps: dict[str, StepStats],
) -> AnalysedShard:
    table = pa.Table.from_pylist(
        [{**rows[i], "pos": shard.start + i, "record_id": records[i]["record_id"]} for i in sorted(rows)],
        schema=ANALYSED_SCHEMA,
    )
    result = AnalysedShard(shard, f"{shard.folder}/analysed.parquet", None, steps=steps)
    lake.write_table(result.analysed_uri, table)
    candidates = set(order)
    kept_norm = [{**n, "pos": shard.start + n["pos"]} for n in normalized if n["pos"] in candidates]
    if kept_norm:
        result.normalized_uri = f"{shard.folder}/normalized-0.parquet"
        kept_norm.sort(key=lambda n: n["pos"])
        lake.write_table(result.normalized_uri, pa.Table.from_pylist(kept_norm, schema=NORMALIZED_SCHEMA))
    result.candidates, result.positions = len(order), np.array(order, np.int64) + shard.start
    result.phashes = np.array([rows[i]["phash"] for i in order], np.int64)
    result.byte_keys = sha_keys([rows[i]["sha256"] for i in order])
    return result
