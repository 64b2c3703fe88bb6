"""The deduped_images stage of one drop: image records -> filtered, deduplicated, captioned images.

Every image record of the drop (raw_crawl rows of kind "image") ends as exactly one kept row or
one drop/reject. The driver here holds no image: it runs the shard passes of `analysed_images` and `kept_images` and
makes the drop-level decisions between them.

1. **Captions and opt-outs.** Every HTML page of the drop is parsed for `<img>` references in shards
   (`caption_pass`); the driver merges them (`captions.CaptionIndex`) and stages each image record's
   caption and opt-out before pass 1.
2. **Pass 1** per shard (`analyse_shard`): screening, header filters, pHash (NSFW score if on).
3. **Dedup** of the candidates against the kept images of earlier drops and earlier records
   (`phash_index.decide`). Kept images and near duplicates within `PIXEL_CHECK_BITS` (to tell
   `pixel_duplicate` from `near_duplicate`) are normalized by **pass 2** per shard
   (`normalize_shard`); if that fails for a kept image, it is rejected and the decisions are
   redone without it, so nothing is ever dropped as a duplicate of a rejected image.
4. **Pass 3** per shard (`publish_shard`): kept rows with the normalized JPEG, drops and rejects in
   record order; then the drop's index entries, and its WebDataset shards of captioned images (written
   from the published rows in an engine task, `write_webdataset`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from mmrecipe.crawl_index import RAW_CRAWL, read_records
from mmrecipe.engine import (
    DEFAULT_SHARD_BYTES,
    Engine,
    LocalEngine,
    ShardStage,
    StageRun,
    StepStats,
    fingerprint,
    plan_shards,
    run_stage,
)
from mmrecipe.html_pages import unreadable_pages
from mmrecipe.images import phash_index
from mmrecipe.images.analysed_images import (
    AnalysedShard,
    CaptionedShard,
    ImagePass,
    analyse_crashed,
    analyse_pass,
    caption_pass,
    write_captions,
)
from mmrecipe.images.captions import CaptionIndex, caption_coverage
from mmrecipe.images.image_analysis import ImageStageConfig
from mmrecipe.images.kept_images import (
    DECISION_SCHEMA,
    KeptImages,
    NormalizeShard,
    PublishImagesShard,
    normalize_crashed,
    normalize_pass,
    publish_pass,
)
from mmrecipe.images.webdataset import ShardWriter
from mmrecipe.stage_output import (
    PROVENANCE_COLUMNS,
    PROVENANCE_FIELDS,
    SIDE,
    STAGING,
    StageOutput,
    commit_version,
    iter_stage_rows,
    stage_prefix,
)
from mmrecipe.storage import Storage
from mmrecipe.warc_index import normalize_uri

ASSET = "deduped_images"
CODE_VERSION = "3"  # 3: shard passes
PIXEL_CHECK_BITS = 2  # near duplicates this close are compared pixel by pixel (pixel_duplicate)

IMAGE_SCHEMA = pa.schema(
    [
        *PROVENANCE_FIELDS,
        pa.field("url", pa.string()),
        pa.field("page_url", pa.string()),
        pa.field("width", pa.int32(), nullable=False),  # original size, after EXIF rotation
        pa.field("height", pa.int32(), nullable=False),
        pa.field("format", pa.string(), nullable=False),  # Pillow format: JPEG, PNG, WEBP, GIF
        pa.field("mime_type", pa.string()),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("n_frames", pa.int32(), nullable=False),  # > 1: animated, frame 0 kept
        pa.field("sha256", pa.string(), nullable=False),  # of the original bytes
        pa.field("pixel_sha256", pa.string(), nullable=False),  # of the normalized RGB pixels
        pa.field("phash", pa.int64(), nullable=False),  # 64-bit pHash, uint64 bits stored as int64
        pa.field("dedup_cluster", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("caption_source", pa.string(), nullable=False),  # alt, title, surrounding_text, none
        pa.field("nsfw_score", pa.float32()),  # null when the NSFW filter is off
        pa.field("norm_width", pa.int32(), nullable=False),
        pa.field("norm_height", pa.int32(), nullable=False),
        pa.field("normalized_jpeg", pa.binary(), nullable=False),
    ]
)


@dataclass
class ImageStageReport(KeptImages):
    """What the stage did beyond the counts: kept-image histograms, captions, shards, index state."""

    pages: int = 0
    opted_out_pages: int = 0
    unreadable_pages: int = 0
    shards: list[str] = field(default_factory=list)
    shard_samples: int = 0
    clusters: int = 0
    digest: str = ""
    index_bytes_read: int = 0  # pHash index bytes (footers, row groups) read to decide against earlier drops
    stale_drops: list[str] = field(default_factory=list)

    @property
    def caption_coverage(self) -> float:
        return caption_coverage(self.caption_sources)


@dataclass
class ImageStageResult:
    """The published stage output and its report."""

    run: StageRun
    report: ImageStageReport

    @property
    def output(self) -> StageOutput:
        return self.run.output


def collect_captions(
    engine: Engine, storage: Storage, drop: str, surrounding_text: bool, shard_bytes: int
) -> CaptionIndex:
    """Image references of every HTML page of the drop, scanned in shards (unreadable pages are counted, not fatal)."""
    index = CaptionIndex(surrounding_text=surrounding_text)
    shards = plan_shards(storage, drop, "html", shard_bytes)
    for results in engine.run(partial(caption_pass, storage), shards, partial(unreadable_pages, storage)):
        for scans in results:
            for scan in scans:
                if scan is None:
                    index.pages += 1
                    index.unreadable_pages += 1
                else:
                    index.add_page(*scan)
    return index


def shards_prefix(storage: Storage, drop: str) -> str:
    """Where a drop's WebDataset shards live."""
    return storage.uri(stage_prefix(ASSET, drop, SIDE), "shards")


def captioned_shards(
    engine: Engine, storage: Storage, drop: str, config: ImageStageConfig, shard_bytes: int
) -> tuple[list[CaptionedShard], CaptionIndex]:
    """The drop's image shards, each with the captions of its records staged, and the drop's caption index."""
    index = collect_captions(engine, storage, drop, config.surrounding_text, shard_bytes)
    urls = read_records(storage, drop, "image", columns=["target_uri"])["target_uri"].to_pylist()
    staging = storage.uri(stage_prefix(ASSET, drop, STAGING), "passes")
    shards = [CaptionedShard(**vars(s), staging=staging) for s in plan_shards(storage, drop, "image", shard_bytes)]
    for shard in shards:
        write_captions(storage, shard, [index.caption_for(normalize_uri(u)) for u in urls[shard.start : shard.stop]])
    return shards, index


def _pixel_candidate(d: phash_index.Decision) -> bool:
    """Whether a near duplicate is close enough that its pixels may be identical to its owner's."""
    return d.reason == "near_duplicate" and (d.hamming or 0) <= PIXEL_CHECK_BITS


@dataclass
class Decided:
    """The drop-level dedup: decisions by drop position, late rejects, and the staged normalized parts."""

    decisions: dict[int, phash_index.Decision] = field(default_factory=dict)
    late: dict[int, tuple[str, str]] = field(default_factory=dict)
    normalized: dict[str, list[str]] = field(default_factory=dict)  # shard span -> staged normalized parts
    step: StepStats = field(default_factory=StepStats)  # pass 2, over every round


def decide_drop(
    engine: Engine, job: ImagePass, analysed: Sequence[AnalysedShard], prior: phash_index.PriorKept
) -> Decided:
    """Dedup decisions over every shard's candidates, normalizing kept images (pass 2); redone if one fails."""
    cfg = job.cfg
    cands = {p: c for a in analysed for p, c in zip(a.positions, a.candidates, strict=True)}
    pixels = {p: px for a in analysed for p, px in a.pixels.items()}
    shard_of = {p: a.shard for a in analysed for p in a.positions}
    out = Decided(normalized={a.shard.span: [a.normalized_uri] if a.normalized_uri else [] for a in analysed})
    rounds = 0
    while True:
        order = sorted(cands)
        decided = phash_index.decide([cands[p] for p in order], prior, cfg.hamming_k, cfg.hash_bands)
        out.decisions = dict(zip(order, decided, strict=True))
        todo: dict[str, list[int]] = {}
        for pos, d in out.decisions.items():
            if pos not in pixels and (d.kept or _pixel_candidate(d)):
                todo.setdefault(shard_of[pos].span, []).append(pos)
        rounds += 1
        shards = [
            NormalizeShard(**vars(a.shard), positions=tuple(todo[a.shard.span]),
                           out=f"{a.shard.folder}/normalized-{rounds}")
            for a in analysed if a.shard.span in todo
        ]  # fmt: skip
        kept_failed = False
        ran = engine.run(partial(normalize_pass, job), shards, partial(normalize_crashed, job))
        for shard, results in zip(shards, ran, strict=True):
            for done in results:
                out.step.add(done.step)
                pixels |= done.pixels
                out.normalized[shard.span] += [done.normalized_uri] if done.normalized_uri else []
                for pos, why in done.failed.items():
                    out.late[pos] = why
                    kept_failed |= out.decisions[pos].kept
                    del cands[pos]
        if not kept_failed:
            break
    for pos in [p for p in out.decisions if p in out.late]:
        del out.decisions[pos]
    prior_pixels = dict(zip(prior.record_id, prior.pixel_sha256, strict=True))
    by_id = {cands[p].record_id: pixels.get(p) for p in out.decisions}
    for pos, d in out.decisions.items():
        if _pixel_candidate(d):
            owner = prior_pixels.get(d.owner or "") or by_id.get(d.owner or "")
            if owner is not None and owner == pixels.get(pos):
                out.decisions[pos] = replace(d, reason="pixel_duplicate")
    return out


def _publish_shards(storage: Storage, analysed: Sequence[AnalysedShard], decided: Decided) -> list[PublishImagesShard]:
    """Stage each shard's decisions (and late rejects) for pass 3."""
    shards = []
    for a in analysed:
        rows = [
            {"pos": p, "kept": d.kept, "cluster": d.cluster, "reason": d.reason, "hamming": d.hamming,
             "owner": d.owner, "owner_drop": d.owner_drop}
            for p in a.positions if (d := decided.decisions.get(p)) is not None
        ]  # fmt: skip
        rows += [{"pos": p, "late_reason": decided.late[p][0], "late_detail": decided.late[p][1]}
                 for p in a.positions if p in decided.late]  # fmt: skip
        uri = f"{a.shard.folder}/decisions.parquet"
        storage.write_table(uri, pa.Table.from_pylist(rows, schema=DECISION_SCHEMA))
        normalized = tuple(decided.normalized[a.shard.span])
        shards.append(
            PublishImagesShard(**vars(a.shard), analysed=a.analysed_uri, normalized=normalized, decisions=uri)
        )
    return shards


@dataclass(frozen=True)
class WebDatasetJob:
    """The task that writes a drop's WebDataset shards from its published kept rows (never in the driver)."""

    storage: Storage
    drop: str
    config: ImageStageConfig


def write_webdataset(job: WebDatasetJob) -> tuple[list[str], int]:
    """The drop's WebDataset shards of kept images (captioned ones, unless `shard_uncaptioned`), from its data:
    the published shard URIs and their sample count."""
    storage, drop, config = job.storage, job.drop, job.config
    shards = ShardWriter(storage, shards_prefix(storage, drop), config.shard_samples)
    cols = [*PROVENANCE_COLUMNS, "url", "page_url", "caption_source", "width", "height", "format", "sha256"]
    cols += ["phash", "dedup_cluster", "caption", "normalized_jpeg"]
    try:
        for kept in iter_stage_rows(storage, ASSET, drop, columns=cols):
            if kept["caption"] or config.shard_uncaptioned:
                meta = {k: kept[k] for k in cols[:-4]}
                meta |= {"phash": f"{kept['phash'] & (2**64 - 1):016x}", "dedup_cluster": kept["dedup_cluster"]}
                shards.add(kept["record_id"], kept["normalized_jpeg"], kept["caption"], meta)
    except BaseException:
        shards.abort()
        raise
    return shards.close(), shards.samples


def run_image_stage(
    storage: Storage,
    drop: str,
    config: ImageStageConfig | None = None,
    scorer: Any = None,
    engine: Engine | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> ImageStageResult:
    """Run the stage for one drop on `engine` (default: inline): publish its tables, shards and index entries."""
    config, engine = config or ImageStageConfig(), engine or LocalEngine(1)
    job = ImagePass(storage, config, scorer)
    shards, captions = captioned_shards(engine, storage, drop, config, shard_bytes)
    ran = engine.run(partial(analyse_pass, job), shards, partial(analyse_crashed, job))
    analysed = [a for results in ran for a in results]
    candidates = [c for a in analysed for c in a.candidates]
    match = phash_index.match_prior(
        storage, drop, np.array([c.phash for c in candidates], np.int64), [c.sha256 for c in candidates],
        config.hamming_k, bands=config.hash_bands, buckets=config.index_buckets,
    )  # fmt: skip
    decided = decide_drop(engine, job, analysed, match.prior)
    version = fingerprint(
        ASSET, CODE_VERSION, replace(config, workers=0), match.basis, commit_version(storage, RAW_CRAWL, drop)
    )
    stage = ShardStage(ASSET, drop, storage, IMAGE_SCHEMA, publish_pass, job, version)
    run = run_stage(engine, stage, _publish_shards(storage, analysed, decided))
    run.steps = StepStats.merged([*(a.steps for a in analysed), {"normalize": decided.step}, run.steps])
    report = ImageStageReport(pages=captions.pages, opted_out_pages=captions.opted_out_pages)
    report.unreadable_pages, report.index_bytes_read, entries = captions.unreadable_pages, match.bytes_read, []
    for result in run.results:
        if result.extra:  # a record that crashed its worker has none
            entries += result.extra["entries"]
            report.add(result.extra)
            report.clusters += sum(result.extra["formats"].values())
    report.shards, report.shard_samples = engine.map(write_webdataset, [WebDatasetJob(storage, drop, config)])[0]
    table = pa.Table.from_pylist(entries, schema=phash_index.ENTRY_SCHEMA)
    report.digest = phash_index.write_entries(
        storage, drop, table, match.basis, config.hamming_k, config.hash_bands, config.index_buckets
    )
    report.stale_drops = phash_index.stale_drops(storage)
    return ImageStageResult(run, report)
