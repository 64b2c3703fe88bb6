"""The last shard passes of deduped_images: kept images normalized, then published with the shards' drops.

2. `normalize_pass` on the shards holding kept images and close near duplicates (the driver's
   decisions): decode again and normalize; it stages the JPEGs and returns the rejects.
3. `publish_pass` on every shard through `run_stage`: kept rows (with their staged JPEGs), drops and
   rejects, all in record order, plus the shard's pHash-index entries (staged, named in `extra`) and its
   kept-image histograms; it reads staged parts, never payloads, and is published with one commit.

The driver's decisions name only the candidates with a duplicate edge (and late rejects): a candidate
without one is kept, in its own cluster.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mmrecipe.engine import WORKER_CRASHED, ShardOutput, StepStats, read_shard
from mmrecipe.images import phash_index
from mmrecipe.images.analysed_images import (
    NORMALIZED_SCHEMA,
    CaptionedShard,
    ImagePass,
    normalized_row,
    shard_records,
)
from mmrecipe.images.captions import Caption
from mmrecipe.images.decoding import ImageRejected
from mmrecipe.images.image_analysis import (
    map_in_order,
    normalize_image,
    size_bucket,
    thumbnail,
)
from mmrecipe.stage_output import PROVENANCE_COLUMNS
from mmrecipe.storage import Storage
from mmrecipe.warc_index import RecordReader, normalize_uri

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


@dataclass
class NormalizedShard:
    """What pass 2 of a shard returns: where it staged what it normalized, and the images that failed."""

    normalized_uri: str | None
    failed: dict[int, tuple[str, str]] = field(default_factory=dict)  # pos -> (reason, detail)
    step: StepStats = field(default_factory=StepStats)


@dataclass(frozen=True)
class NormalizeShard(CaptionedShard):
    """A shard of pass 2: the drop positions to normalize, and where to stage the result.

    With `analysed` set, also every candidate of that pass-1 part but the `decided` ones (those with a duplicate
    edge, which the driver decided and listed in `positions` if they need it): the others are all kept."""

    positions: tuple[int, ...] = ()
    analysed: str = ""
    decided: tuple[int, ...] = ()
    out: str = ""

    def todo(self, lake: Storage) -> list[int]:
        todo = set(self.positions)
        if self.analysed:
            table = lake.read_table(self.analysed, ["pos", "outcome"])
            todo.update(table.filter(pc.equal(table["outcome"], "candidate"))["pos"].to_pylist())
            todo.difference_update(set(self.decided) - set(self.positions))
        return sorted(p for p in todo if self.start <= p < self.stop)  # a split shard: its own half


def normalize_pass(job: ImagePass, shard: NormalizeShard) -> NormalizedShard:
    """Pass 2: normalize the images at the shard's positions and stage their JPEGs."""
    started, result, staged = time.perf_counter(), NormalizedShard(None), []
    records, todo = read_shard(job.lake, shard).to_pylist(), shard.todo(job.lake)
    with RecordReader(job.lake) as reader:

        def payloads() -> Any:
            for pos in todo:
                row = records[pos - shard.start]
                yield pos, reader.read(row["warc_path"], row["warc_offset"], row["warc_length"]).payload

        work = map_in_order(lambda item: normalize_image(item[1], job.cfg), payloads(), job.cfg.workers)
        for (pos, _), future in work:
            try:
                staged.append(normalized_row(pos, future.result(), None))
            except ImageRejected as e:
                result.failed[pos] = (e.reason, e.detail)
    if staged:
        result.normalized_uri = f"{shard.out}-{shard.start:010d}.parquet"
        job.lake.write_table(result.normalized_uri, pa.Table.from_pylist(staged, schema=NORMALIZED_SCHEMA))
    result.step = StepStats(len(todo), time.perf_counter() - started)
    result.step.rejected.update(reason for reason, _ in result.failed.values())
    return result


def normalize_crashed(job: ImagePass, shard: NormalizeShard, error: str) -> NormalizedShard:
    """The pass-2 result of a record whose normalization kills its worker: rejected `worker_crashed`."""
    failed = {pos: (WORKER_CRASHED, error) for pos in shard.todo(job.lake)}
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
    """A shard of pass 3: its staged pass-1 outcomes, normalized images and dedup decisions, and where it stages
    its pHash-index entries."""

    analysed: str = ""
    normalized: tuple[str, ...] = ()
    decisions: str = ""
    entries: str = ""

    @property
    def entries_part(self) -> str:
        return f"{self.entries}/entries-{self.start:010d}.parquet"  # a split shard's halves: one part each


def publish_pass(job: ImagePass, shard: PublishImagesShard, out: ShardOutput) -> Mapping[str, Any]:
    """Pass 3: the shard's kept rows, drops and rejects in record order, from staged parts and decisions."""
    started = time.perf_counter()
    records, captions = shard_records(job, shard)
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
        if d is None:  # no duplicate edge: kept, in its own cluster
            d = {"kept": True, "cluster": row["record_id"], "reason": None, "hamming": None}
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
    job.lake.write_table(shard.entries_part, pa.Table.from_pylist(entries, schema=phash_index.ENTRY_SCHEMA))
    return {"entries": shard.entries_part, **result.as_json()}


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
