"""The deduped_images stage of one drop: image records -> filtered, deduplicated, captioned images.

Every image record of the drop (raw_crawl rows of kind "image") ends as exactly one kept row or
one drop/reject. The driver here holds no image: it runs the shard passes of `image_shards` and
makes the drop-level decisions between them.

1. **Captions and opt-outs.** Every HTML page of the drop is parsed for `<img>` references
   (`captions.CaptionIndex`); each image record gets its caption and opt-out before pass 1.
2. **Pass 1** per shard (`analyse_shard`): screening, header filters, pHash (NSFW score if on).
3. **Dedup** of the candidates against the kept images of earlier drops and earlier records
   (`phash_index.decide`). Kept images and near duplicates within `PIXEL_CHECK_BITS` (to tell
   `pixel_duplicate` from `near_duplicate`) are normalized by **pass 2** per shard
   (`normalize_shard`); if that fails for a kept image, it is rejected and the decisions are
   redone without it, so nothing is ever dropped as a duplicate of a rejected image.
4. **Pass 3** per shard (`publish_shard`): kept rows with the normalized JPEG, drops and rejects in
   record order; then the drop's index entries and its WebDataset shards of captioned images.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mmrecipe.crawl_index import read_records
from mmrecipe.images import phash_index
from mmrecipe.images.captions import CaptionIndex, scan_page
from mmrecipe.images.image_analysis import ImageStageConfig
from mmrecipe.images.image_filters import NsfwScorer
from mmrecipe.images.image_shards import (
    AnalysedShard,
    ImageSpan,
    NormalizedShard,
    PublishedImages,
    analyse_shard,
    normalize_shard,
    publish_shard,
)
from mmrecipe.images.webdataset import ShardWriter
from mmrecipe.stage_output import PROVENANCE_COLUMNS, PROVENANCE_FIELDS, SIDE, StageOutput, StageWriter, stage_prefix
from mmrecipe.storage import Storage
from mmrecipe.warc_index import RecordReader, normalize_uri

ASSET = "deduped_images"
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
class ImageStageReport:
    """What the stage did beyond the counts: histograms, captions, shards, index state."""

    formats: Counter[str] = field(default_factory=Counter)
    sizes: Counter[str] = field(default_factory=Counter)
    caption_sources: Counter[str] = field(default_factory=Counter)
    pages: int = 0
    opted_out_pages: int = 0
    unreadable_pages: int = 0
    animated: int = 0
    shards: list[str] = field(default_factory=list)
    shard_samples: int = 0
    clusters: int = 0
    digest: str = ""
    stale_drops: list[str] = field(default_factory=list)
    thumbnails: list[dict[str, Any]] = field(default_factory=list)

    @property
    def caption_coverage(self) -> float:
        kept = sum(self.caption_sources.values())
        return round(1 - self.caption_sources["none"] / kept, 4) if kept else 0.0


@dataclass
class ImageStageResult:
    """The published stage output and its report."""

    output: StageOutput
    report: ImageStageReport


def collect_captions(storage: Storage, drop: str, reader: RecordReader, surrounding_text: bool) -> CaptionIndex:
    """Image references of every HTML page of the drop (unreadable pages are counted, not fatal)."""
    index = CaptionIndex(surrounding_text=surrounding_text)
    pages = read_records(storage, drop, "html", columns=["warc_path", "warc_offset", "warc_length", "target_uri"])
    for order, page in enumerate(pages.to_pylist()):
        try:
            rec = reader.read(page["warc_path"], page["warc_offset"], page["warc_length"])
        except ValueError:
            index.pages += 1
            index.unreadable_pages += 1
            continue
        url = page["target_uri"] or ""
        opt_out, refs = scan_page(rec.payload, url, rec.http_headers, order)
        index.add_page(opt_out, refs)
    return index


def shards_prefix(storage: Storage, drop: str) -> str:
    """Where a drop's WebDataset shards live."""
    return storage.uri(stage_prefix(ASSET, drop, SIDE), "shards")


def staging_prefix(storage: Storage, drop: str, shard: int) -> str:
    """Where one shard's passes stage their parts until the drop is published."""
    return storage.uri(stage_prefix(ASSET, drop, SIDE), "staging", f"shard-{shard:05d}")


def image_spans(storage: Storage, drop: str, config: ImageStageConfig, shard_records: int) -> list[ImageSpan]:
    """The drop's image records cut into shards of `shard_records`, each record with its caption."""
    with RecordReader(storage) as reader:
        index = collect_captions(storage, drop, reader, config.surrounding_text)
    rows = read_records(storage, drop, "image").to_pylist()
    captions = [index.caption_for(normalize_uri(r["target_uri"])) for r in rows]
    step = max(1, shard_records)
    return [ImageSpan(i // step, i, rows[i : i + step], captions[i : i + step]) for i in range(0, len(rows), step)]


def _pixel_candidate(d: phash_index.Decision) -> bool:
    """Whether a near duplicate is close enough that its pixels may be identical to its owner's."""
    return d.reason == "near_duplicate" and (d.hamming or 0) <= PIXEL_CHECK_BITS


@dataclass
class Decided:
    """The drop-level dedup: decisions by drop position, late rejects, and the staged normalized parts."""

    decisions: dict[int, phash_index.Decision] = field(default_factory=dict)
    late: dict[int, tuple[str, str]] = field(default_factory=dict)
    normalized: dict[int, list[str]] = field(default_factory=dict)  # shard -> staged normalized parts


def decide_drop(
    storage: Storage,
    drop: str,
    spans: Sequence[ImageSpan],
    analysed: Sequence[AnalysedShard],
    prior: phash_index.PriorKept,
    config: ImageStageConfig,
) -> Decided:
    """Dedup decisions over every shard's candidates, normalizing kept images (pass 2); redone if one fails."""
    cands = {p: c for a in analysed for p, c in zip(a.positions, a.candidates, strict=True)}
    pixels = {p: px for a in analysed for p, px in a.pixels.items()}
    shard_of = {p: a_i for a_i, a in enumerate(analysed) for p in a.positions}
    out = Decided(normalized={i: [a.normalized_uri] if a.normalized_uri else [] for i, a in enumerate(analysed)})
    rounds = 0
    while True:
        order = sorted(cands)
        decided = phash_index.decide([cands[p] for p in order], prior, config.hamming_k, config.hash_bands)
        out.decisions = dict(zip(order, decided, strict=True))
        todo: dict[int, list[int]] = {}
        for pos, d in out.decisions.items():
            if pos not in pixels and (d.kept or _pixel_candidate(d)):
                todo.setdefault(shard_of[pos], []).append(pos)
        rounds += 1
        kept_failed = False
        for shard, positions in sorted(todo.items()):
            uri = f"{staging_prefix(storage, drop, spans[shard].index)}/normalized-{rounds}.parquet"
            done: NormalizedShard = normalize_shard(storage, uri, spans[shard], positions, config)
            pixels |= done.pixels
            out.normalized[shard] += [done.normalized_uri] if done.normalized_uri else []
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


def write_webdataset(storage: Storage, drop: str, data_uri: str, config: ImageStageConfig) -> ShardWriter:
    """The drop's WebDataset shards of kept images (captioned ones, unless `shard_uncaptioned`), from its data."""
    shards = ShardWriter(storage, shards_prefix(storage, drop), config.shard_samples)
    cols = [*PROVENANCE_COLUMNS, "url", "page_url", "caption_source", "width", "height", "format", "sha256"]
    cols += ["phash", "dedup_cluster", "caption", "normalized_jpeg"]
    try:
        with storage.open_input(data_uri) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=256, columns=cols):
                for kept in batch.to_pylist():
                    if kept["caption"] or config.shard_uncaptioned:
                        meta = {k: kept[k] for k in cols[:-4]}
                        meta |= {"phash": f"{kept['phash'] & (2**64 - 1):016x}", "dedup_cluster": kept["dedup_cluster"]}
                        shards.add(kept["record_id"], kept["normalized_jpeg"], kept["caption"], meta)
    except BaseException:
        shards.abort()
        raise
    return shards


def _merge(report: ImageStageReport, published: PublishedImages) -> None:
    report.formats.update(published.formats)
    report.sizes.update(published.sizes)
    report.caption_sources.update(published.caption_sources)
    report.animated += published.animated
    report.clusters += sum(published.formats.values())
    report.thumbnails += published.thumbnails[: 4 - len(report.thumbnails)]


_SCORERS: dict[str | None, NsfwScorer] = {}


def nsfw_scorer(config: ImageStageConfig) -> NsfwScorer | None:
    """The process-wide NSFW scorer of `config` (loaded once per process), or None when the filter is off."""
    if not config.nsfw:
        return None
    if config.nsfw_model_path not in _SCORERS:
        _SCORERS[config.nsfw_model_path] = NsfwScorer(config.nsfw_model_path)
    return _SCORERS[config.nsfw_model_path]


def run_image_stage(
    storage: Storage,
    drop: str,
    config: ImageStageConfig | None = None,
    scorer: Any = None,
    shard_records: int = 4096,
) -> ImageStageResult:
    """Run the stage for one drop: publish its tables, shards and index entries; return what it did."""
    config = config or ImageStageConfig()
    scorer = scorer if scorer is not None else nsfw_scorer(config)
    spans = image_spans(storage, drop, config, shard_records)
    analysed = [analyse_shard(storage, staging_prefix(storage, drop, s.index), s, config, scorer) for s in spans]
    prior, basis = phash_index.load_prior(storage, drop)
    decided = decide_drop(storage, drop, spans, analysed, prior, config)
    report, entries = ImageStageReport(), []
    with StageWriter(storage, ASSET, drop, IMAGE_SCHEMA) as out:
        for i, (span, a) in enumerate(zip(spans, analysed, strict=True)):
            published = publish_shard(
                storage, span, a.analysed_uri, decided.normalized[i], decided.decisions, decided.late, out
            )
            entries.append(published.entries)
            _merge(report, published)
        output = out.close()
    shards = write_webdataset(storage, drop, output.data_uri, config)
    report.shards, report.shard_samples = shards.close(), shards.samples
    for uri in storage.list_files(storage.uri(stage_prefix(ASSET, drop, SIDE), "staging")):
        storage.delete(uri)
    table = pa.concat_tables(entries) if entries else phash_index.ENTRY_SCHEMA.empty_table()
    report.digest = phash_index.write_entries(storage, drop, table, basis, config.hamming_k)
    report.stale_drops = phash_index.stale_drops(storage)
    return ImageStageResult(output, report)
