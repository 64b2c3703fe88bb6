"""The three shard passes of deduped_images, the parts they stage, and what each returns to the driver.

A drop's image records are cut into shards (`plan_shards`); the driver stages each shard's captions
(`CaptionedShard`) and runs, on the engine:

0. `caption_pass` on the shards of the drop's HTML pages: their image references and opt-outs, from
   which the driver picks each image's caption (`captions.CaptionIndex`).
1. `analyse_pass` on every shard: HTTP status, robots opt-out (of a referencing page, or the
   image's own `X-Robots-Tag`), MIME, then `analyse_image` (header filters, pHash), and the NSFW
   score when that filter is on. It stages one row per record (outcome or features) and returns
   only the candidates' (position, record id, byte hash, pHash): never pixels.
2. `normalize_pass` on the shards holding kept images and close near duplicates (the driver's
   decisions): decode again and normalize; it stages the JPEGs and returns pixel hashes or rejects.
3. `publish_pass` on every shard through `run_stage`: kept rows (with their staged JPEGs), drops and
   rejects, all in record order, plus the shard's pHash-index entries; it reads staged parts, never
   payloads, and is published with one commit.

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

from mmrecipe.engine import WORKER_CRASHED, Shard, ShardOutput, StepStats, read_shard, worker_cached
from mmrecipe.images import phash_index
from mmrecipe.images.captions import Caption, ImageRef, scan_page
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
from mmrecipe.images.image_filters import NsfwScorer
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
CAPTION_SCHEMA = pa.schema(
    [
        pa.field("caption", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("page_url", pa.string()),
        pa.field("opt_out", pa.bool_(), nullable=False),
        pa.field("opt_out_page", pa.string()),
    ]
)
DECISION_SCHEMA = pa.schema(
    [
        pa.field("pos", pa.int64(), nullable=False),
        pa.field("kept", pa.bool_()),
        pa.field("cluster", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("hamming", pa.int32()),
        pa.field("owner", pa.string()),
        pa.field("owner_drop", pa.string()),
        pa.field("late_reason", pa.string()),  # a rejected normalization: the record's reject reason
        pa.field("late_detail", pa.string()),
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


PageScan = tuple[bool, list[ImageRef]] | None  # one HTML page: (opts out?, its image references); None: unreadable


def caption_pass(lake: Storage, shard: Shard) -> list[PageScan]:
    """Pass 0 over a shard of the drop's HTML pages: each page's opt-out and image references, in order."""
    pages = read_shard(lake, shard, ["warc_path", "warc_offset", "warc_length", "target_uri"]).to_pylist()
    scans: list[PageScan] = []
    with RecordReader(lake) as reader:
        for i, page in enumerate(pages):
            try:
                rec = reader.read(page["warc_path"], page["warc_offset"], page["warc_length"])
            except ValueError:
                scans.append(None)
                continue
            scans.append(scan_page(rec.payload, page["target_uri"] or "", rec.http_headers, shard.start + i))
    return scans


def caption_crashed(lake: Storage, shard: Shard, error: str) -> list[PageScan]:
    """A page that kills its worker process is counted as unreadable."""
    return [None] * shard.rows


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


def write_captions(lake: Storage, shard: CaptionedShard, captions: Sequence[Caption]) -> None:
    """Stage the captions the driver chose for the shard's records, in record order."""
    lake.write_table(
        f"{shard.staging}/captions-{shard.index:05d}.parquet",
        pa.Table.from_pylist([asdict(c) for c in captions], schema=CAPTION_SCHEMA),
    )


def read_captions(lake: Storage, shard: CaptionedShard) -> list[Caption]:
    """The staged captions of a shard's records (a split shard's slice of its planned shard's)."""
    table = lake.read_table(f"{shard.staging}/captions-{shard.index:05d}.parquet")
    return [Caption(**c) for c in table.slice(shard.start - shard.base, shard.rows).to_pylist()]


def _records(job: ImagePass, shard: CaptionedShard) -> tuple[list[dict[str, Any]], list[Caption]]:
    return read_shard(job.lake, shard).to_pylist(), read_captions(job.lake, shard)


@dataclass
class AnalysedShard:
    """What pass 1 of a shard returns: where it staged its outcomes, and its candidates for dedup."""

    shard: CaptionedShard
    analysed_uri: str
    normalized_uri: str | None  # NSFW on: every candidate is normalized in pass 1
    candidates: list[phash_index.Candidate] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # drop positions of the candidates
    pixels: dict[int, str] = field(default_factory=dict)  # pos -> pixel hash, for normalized candidates
    steps: dict[str, StepStats] = field(default_factory=dict)


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
    records, captions = _records(job, shard)
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
                normalized.append(_normalized_row(i, result.normalized, score))
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
    table = pa.Table.from_pylist([{**rows[i], "pos": shard.start + i} for i in sorted(rows)], schema=ANALYSED_SCHEMA)
    result = AnalysedShard(shard, f"{shard.folder}/analysed.parquet", None, steps=steps)
    lake.write_table(result.analysed_uri, table)
    candidates = set(order)
    kept_norm = [{**n, "pos": shard.start + n["pos"]} for n in normalized if n["pos"] in candidates]
    if kept_norm:
        result.normalized_uri = f"{shard.folder}/normalized-0.parquet"
        kept_norm.sort(key=lambda n: n["pos"])
        lake.write_table(result.normalized_uri, pa.Table.from_pylist(kept_norm, schema=NORMALIZED_SCHEMA))
        result.pixels = {n["pos"]: n["pixel_sha256"] for n in kept_norm}
    for i in order:
        row = records[i]
        result.candidates.append(phash_index.Candidate(row["record_id"], rows[i]["sha256"], rows[i]["phash"]))
        result.positions.append(shard.start + i)
    return result


@dataclass
class NormalizedShard:
    """What pass 2 of a shard returns: pixel hashes of what it normalized, and the images that failed."""

    normalized_uri: str | None
    pixels: dict[int, str] = field(default_factory=dict)
    failed: dict[int, tuple[str, str]] = field(default_factory=dict)  # pos -> (reason, detail)
    step: StepStats = field(default_factory=StepStats)


@dataclass(frozen=True)
class NormalizeShard(CaptionedShard):
    """A shard of pass 2: the drop positions to normalize, and where to stage the result."""

    positions: tuple[int, ...] = ()
    out: str = ""

    def todo(self) -> list[int]:
        return [p for p in self.positions if self.start <= p < self.stop]  # a split shard: its own half


def normalize_pass(job: ImagePass, shard: NormalizeShard) -> NormalizedShard:
    """Pass 2: normalize the images at the shard's positions and stage their JPEGs."""
    started, result, staged = time.perf_counter(), NormalizedShard(None), []
    records = read_shard(job.lake, shard).to_pylist()
    with RecordReader(job.lake) as reader:

        def payloads() -> Any:
            for pos in shard.todo():
                row = records[pos - shard.start]
                yield pos, reader.read(row["warc_path"], row["warc_offset"], row["warc_length"]).payload

        work = map_in_order(lambda item: normalize_image(item[1], job.cfg), payloads(), job.cfg.workers)
        for (pos, _), future in work:
            try:
                staged.append(_normalized_row(pos, future.result(), None))
            except ImageRejected as e:
                result.failed[pos] = (e.reason, e.detail)
    if staged:
        result.normalized_uri = f"{shard.out}-{shard.start:010d}.parquet"
        job.lake.write_table(result.normalized_uri, pa.Table.from_pylist(staged, schema=NORMALIZED_SCHEMA))
        result.pixels = {n["pos"]: n["pixel_sha256"] for n in staged}
    result.step = StepStats(len(shard.todo()), time.perf_counter() - started)
    result.step.rejected.update(reason for reason, _ in result.failed.values())
    return result


def normalize_crashed(job: ImagePass, shard: NormalizeShard, error: str) -> NormalizedShard:
    """The pass-2 result of a record whose normalization kills its worker: rejected `worker_crashed`."""
    failed = {pos: (WORKER_CRASHED, error) for pos in shard.todo()}
    return NormalizedShard(
        None, failed=failed, step=StepStats(len(failed), rejected=Counter({WORKER_CRASHED: len(failed)}))
    )


@dataclass
class KeptImages:
    """Histograms of kept images (formats, longer sides, caption sources, animated) and a few thumbnails."""

    formats: Counter[str] = field(default_factory=Counter)
    sizes: Counter[str] = field(default_factory=Counter)
    caption_sources: Counter[str] = field(default_factory=Counter)
    animated: int = 0
    thumbnails: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"formats": dict(self.formats), "sizes": dict(self.sizes), "animated": self.animated,
                "caption_sources": dict(self.caption_sources), "thumbnails": self.thumbnails}  # fmt: skip

    def add(self, other: Mapping[str, Any]) -> None:
        """Add another shard's histograms (as `as_json` gave them); thumbnails up to 4."""
        self.formats.update(other["formats"])
        self.sizes.update(other["sizes"])
        self.caption_sources.update(other["caption_sources"])
        self.animated += other["animated"]
        self.thumbnails += other["thumbnails"][: 4 - len(self.thumbnails)]


@dataclass(frozen=True)
class PublishImagesShard(CaptionedShard):
    """A shard of pass 3: its staged pass-1 outcomes, normalized images and dedup decisions."""

    analysed: str = ""
    normalized: tuple[str, ...] = ()
    decisions: str = ""


def publish_pass(job: ImagePass, shard: PublishImagesShard, out: ShardOutput) -> Mapping[str, Any]:
    """Pass 3: the shard's kept rows, drops and rejects in record order, from staged parts and decisions."""
    started = time.perf_counter()
    records, captions = _records(job, shard)
    analysed = {r["pos"]: r for r in job.lake.read_table(shard.analysed).to_pylist()}
    norm = {r["pos"]: r for uri in shard.normalized for r in job.lake.read_table(uri).to_pylist()}
    decided = {d.pop("pos"): d for d in job.lake.read_table(shard.decisions).to_pylist()}
    entries, result = [], KeptImages()
    for i, row in enumerate(records):
        pos, a = shard.start + i, analysed[shard.start + i]
        outcome, reason, detail = (a["outcome"], a["reason"], a["detail"] or "")
        d = decided.get(pos)
        if d is not None and d["late_reason"]:
            outcome, reason, detail = "rejected", d["late_reason"], d["late_detail"]
        if outcome != "candidate":
            (out.drop if outcome == "dropped" else out.reject)(row, reason, detail)
            continue
        assert d is not None, f"no dedup decision for candidate {row['record_id']}"
        n = norm.get(pos)
        entries.append(_entry(row, a, n, d))
        if not d["kept"]:
            where = f" in drop {d['owner_drop']}" if d["owner_drop"] else ""
            out.drop(row, d["reason"] or "near_duplicate", f"of {d['owner']}{where}, hamming {d['hamming']}")
            continue
        assert n is not None, f"kept image {row['record_id']} was not normalized"
        kept = _kept_row(row, captions[i], a, n, d["cluster"])
        out.keep(kept)
        _account(result, kept)
    dedup = out.steps.setdefault("dedup", StepStats())
    dedup.seen, dedup.seconds = len(entries), time.perf_counter() - started
    dedup.dropped.update(e["reason"] for e in entries if not e["kept"])
    return {"entries": entries, **result.as_json()}


def _entry(
    row: Mapping[str, Any], a: Mapping[str, Any], n: Mapping[str, Any] | None, d: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        **{c: row[c] for c in PROVENANCE_COLUMNS},
        "url": normalize_uri(row["target_uri"]),
        "sha256": a["sha256"],
        "pixel_sha256": n["pixel_sha256"] if n else None,
        "phash": a["phash"],
        "kept": d["kept"],
        "dedup_cluster": d["cluster"],
        "reason": d["reason"],
        "hamming": d["hamming"],
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


def _account(result: KeptImages, kept: dict[str, Any]) -> None:
    result.formats[kept["format"]] += 1
    result.sizes[size_bucket(kept["width"], kept["height"])] += 1
    result.caption_sources[kept["caption_source"]] += 1
    result.animated += int(kept["n_frames"] > 1)
    if len(result.thumbnails) < 4:
        result.thumbnails.append(
            {**{k: kept[k] for k in ("url", "caption")}, "thumb": thumbnail(kept["normalized_jpeg"])}
        )
