"""The deduped_images stage of one drop: image records -> filtered, deduplicated, captioned images.

Every image record of the drop (raw_crawl rows of kind "image") ends as exactly one kept row or
one drop/reject. The driver here holds no image and no per-record state beyond three 64-bit numbers per
candidate (position, pHash, byte-hash key): it runs the shard passes of `analysed_images` and `kept_images`
and the drop-level decisions between them, over the candidates with a duplicate edge only.

1. **Captions and opt-outs.** Every HTML page of the drop is parsed for `<img>` references in shards
   (`caption_pass`, staged per shard); a task per image shard then stages each of its records' caption
   and opt-out from the references to its URL (`stage_captions`, `captions.CaptionIndex`).
2. **Pass 1** per shard (`analyse_pass`): screening, header filters, pHash (NSFW score if on).
3. **Dedup** against the kept images of earlier drops and earlier records. Tasks find the candidates
   with a duplicate edge (`phash_index.duplicate_edges`: same bytes, or a pHash within k of another
   candidate or of an earlier drop's kept image); the others are kept. Only the edge-holding ones are
   decided (`phash_index.decide`, which gives them the decisions they get among all). Kept images and
   near duplicates within `PIXEL_CHECK_BITS` (to tell `pixel_duplicate` from `near_duplicate`) are
   normalized by **pass 2** per shard (`normalize_pass`); if that fails for a kept image with an edge,
   it is rejected and the decisions are redone without it, so nothing is ever dropped as a duplicate
   of a rejected image.
4. **Pass 3** per shard (`publish_pass`): kept rows with the normalized JPEG, drops and rejects in
   record order, and the shard's index entries (staged); then, in engine tasks, the drop's index from
   those parts (`phash_index.write_entries_parts`) and its WebDataset shards of captioned images from
   the published rows (`write_webdataset`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import pyarrow as pa

from mmrecipe.crawl_index import RAW_CRAWL
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
from mmrecipe.images import phash_index
from mmrecipe.images.analysed_images import (
    AnalysedShard,
    CaptionedShard,
    CaptionJob,
    ImagePass,
    PageRefs,
    analyse_crashed,
    analyse_pass,
    caption_pass,
    caption_pass_crashed,
    read_staged,
    stage_captions,
)
from mmrecipe.images.captions import caption_coverage
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
from mmrecipe.images.webdataset import ShardWriter, WebDatasetJob
from mmrecipe.stage_output import (
    PROVENANCE_COLUMNS,
    PROVENANCE_FIELDS,
    SIDE,
    STAGING,
    StageOutput,
    commit_version,
    iter_stage_rows,
    post_commit_staging,
    remove_post_commit_staging,
    stage_prefix,
)
from mmrecipe.storage import Storage

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


def shards_prefix(storage: Storage, drop: str) -> str:
    """Where a drop's WebDataset shards live."""
    return storage.uri(stage_prefix(ASSET, drop, SIDE), "shards")


def captioned_shards(
    engine: Engine, storage: Storage, drop: str, config: ImageStageConfig, shard_bytes: int
) -> tuple[list[CaptionedShard], list[PageRefs]]:
    """The drop's image shards, each with the captions of its records staged (in engine tasks, from the page
    references pass 0 staged), and what pass 0 found per shard of HTML pages."""
    staging = storage.uri(stage_prefix(ASSET, drop, STAGING), "passes")
    pages = plan_shards(storage, drop, "html", shard_bytes)
    ran = engine.run(partial(caption_pass, storage, staging), pages, partial(caption_pass_crashed, storage, staging))
    refs = [r for results in ran for r in results]
    shards = [CaptionedShard(**vars(s), staging=staging) for s in plan_shards(storage, drop, "image", shard_bytes)]
    uris = tuple(r.uri for r in refs if r.uri)
    engine.map(stage_captions, [CaptionJob(storage, s, uris, config.surrounding_text) for s in shards])
    return shards, refs


def _pixel_candidate(d: phash_index.Decision) -> bool:
    """Whether a near duplicate is close enough that its pixels may be identical to its owner's."""
    return d.reason == "near_duplicate" and (d.hamming or 0) <= PIXEL_CHECK_BITS


@dataclass
class Decided:
    """The drop-level dedup of the candidates with a duplicate edge (by drop position), late rejects, and the
    staged normalized parts."""

    decisions: dict[int, phash_index.Decision] = field(default_factory=dict)
    late: dict[int, tuple[str, str]] = field(default_factory=dict)
    normalized: dict[str, list[str]] = field(default_factory=dict)  # shard span -> staged normalized parts
    step: StepStats = field(default_factory=StepStats)  # pass 2, over every round


def decide_drop(
    engine: Engine,
    job: ImagePass,
    analysed: Sequence[AnalysedShard],
    candidates: phash_index.Candidates,
    prior: phash_index.PriorKept,
) -> Decided:
    """Dedup decisions of the candidates with a duplicate edge, normalizing kept images (pass 2: every candidate
    without an edge, in tasks); redone if a kept image with an edge fails to normalize."""
    cfg, lake = job.cfg, job.lake
    edges = candidates.positions[
        phash_index.duplicate_edges(
            candidates.phashes, candidates.byte_keys, prior, cfg.hamming_k, cfg.hash_bands, engine.map
        )
    ]
    mine = {a.shard.span: [p for p in edges.tolist() if a.shard.start <= p < a.shard.stop] for a in analysed}
    span_of = {p: span for span, ps in mine.items() for p in ps}
    edge_cands = {r["pos"]: phash_index.Candidate(r["record_id"], r["sha256"], r["phash"])
             for r in read_staged(lake, [a.analysed_uri for a in analysed if mine[a.shard.span]], set(span_of),
                                   ["pos", "record_id", "sha256", "phash"])}  # fmt: skip
    done = {p for a in analysed if a.normalized_uri for p in mine[a.shard.span]}  # NSFW on: all in pass 1
    out = Decided(normalized={a.shard.span: [a.normalized_uri] if a.normalized_uri else [] for a in analysed})
    rounds = 0
    while True:
        order = sorted(edge_cands)
        decided = phash_index.decide([edge_cands[p] for p in order], prior, cfg.hamming_k, cfg.hash_bands)
        out.decisions = dict(zip(order, decided, strict=True))
        todo: dict[str, list[int]] = {}
        for pos, d in out.decisions.items():
            if pos not in done and (d.kept or _pixel_candidate(d)):
                todo.setdefault(span_of[pos], []).append(pos)
        rounds += 1
        rest = {a.shard.span: a.analysed_uri for a in analysed if rounds == 1 and not a.normalized_uri}
        shards = [
            NormalizeShard(**vars(a.shard), positions=tuple(todo.get(a.shard.span, ())),
                           analysed=rest.get(a.shard.span, ""), decided=tuple(mine[a.shard.span]),
                           out=f"{a.shard.folder}/normalized-{rounds}")
            for a in analysed if a.shard.span in todo or (a.shard.span in rest and a.candidates)
        ]  # fmt: skip
        kept_failed = False
        ran = engine.run(partial(normalize_pass, job), shards, partial(normalize_crashed, job))
        for shard, results in zip(shards, ran, strict=True):
            for normalized in results:
                out.step.add(normalized.step)
                out.normalized[shard.span] += [normalized.normalized_uri] if normalized.normalized_uri else []
                for pos, why in normalized.failed.items():
                    out.late[pos] = why
                    if pos in edge_cands:  # a candidate without an edge changes no decision
                        kept_failed |= out.decisions[pos].kept
                        del edge_cands[pos]
        done.update(p for ps in todo.values() for p in ps)
        if not kept_failed:
            break
    for pos in [p for p in out.decisions if p in out.late]:
        del out.decisions[pos]
    _pixel_duplicates(lake, out, edge_cands, prior)
    return out


def _pixel_duplicates(
    lake: Storage, out: Decided, cands: dict[int, phash_index.Candidate], prior: phash_index.PriorKept
) -> None:
    """Near duplicates within `PIXEL_CHECK_BITS` whose normalized pixels equal their owner's: `pixel_duplicate`."""
    close = {p: d for p, d in out.decisions.items() if _pixel_candidate(d)}
    owners = {d.owner for d in close.values()}
    need = set(close) | {p for p in out.decisions if cands[p].record_id in owners}
    if not close:
        return
    parts = [u for uris in out.normalized.values() for u in uris]
    pixels = {r["pos"]: r["pixel_sha256"] for r in read_staged(lake, parts, need, ["pos", "pixel_sha256"])}
    prior_pixels = {r: px for r, px in zip(prior.record_id, prior.pixel_sha256, strict=True) if r in owners}
    by_id = {cands[p].record_id: pixels.get(p) for p in out.decisions}
    for pos, d in close.items():
        owner = prior_pixels.get(d.owner or "") or by_id.get(d.owner or "")
        if owner is not None and owner == pixels.get(pos):
            out.decisions[pos] = replace(d, reason="pixel_duplicate")


def _publish_shards(
    storage: Storage, drop: str, analysed: Sequence[AnalysedShard], decided: Decided
) -> list[PublishImagesShard]:
    """Stage each shard's decisions (of its candidates with an edge) and late rejects for pass 3."""
    shards, entries = [], post_commit_staging(storage, ASSET, drop, "index_entries")
    for a in analysed:
        mine = sorted(p for p in (*decided.decisions, *decided.late) if a.shard.start <= p < a.shard.stop)
        rows = [
            {"pos": p, "kept": d.kept, "cluster": d.cluster, "reason": d.reason, "hamming": d.hamming,
             "owner": d.owner, "owner_drop": d.owner_drop}
            for p in mine if (d := decided.decisions.get(p)) is not None
        ]  # fmt: skip
        rows += [{"pos": p, "late_reason": decided.late[p][0], "late_detail": decided.late[p][1]}
                 for p in mine if p in decided.late]  # fmt: skip
        uri = f"{a.shard.folder}/decisions.parquet"
        storage.write_table(uri, pa.Table.from_pylist(rows, schema=DECISION_SCHEMA))
        normalized = tuple(decided.normalized[a.shard.span])
        shards.append(PublishImagesShard(**vars(a.shard), analysed=a.analysed_uri, normalized=normalized,
                                         decisions=uri, entries=entries))  # fmt: skip
    return shards


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
    shards, pages = captioned_shards(engine, storage, drop, config, shard_bytes)
    ran = engine.run(partial(analyse_pass, job), shards, partial(analyse_crashed, job))
    analysed = [a for results in ran for a in results]
    candidates = phash_index.Candidates.take(analysed)
    match = phash_index.match_prior(
        storage, drop, candidates.phashes, candidates.byte_keys, config.hamming_k,
        bands=config.hash_bands, buckets=config.index_buckets, map_tasks=engine.map,
    )  # fmt: skip
    decided = decide_drop(engine, job, analysed, candidates, match.prior)
    version = fingerprint(
        ASSET, CODE_VERSION, replace(config, workers=0), match.basis, commit_version(storage, RAW_CRAWL, drop)
    )
    stage = ShardStage(ASSET, drop, storage, IMAGE_SCHEMA, publish_pass, job, version)
    run = run_stage(engine, stage, _publish_shards(storage, drop, analysed, decided))
    run.steps = StepStats.merged([*(a.steps for a in analysed), {"normalize": decided.step}, run.steps])
    report = ImageStageReport(pages=sum(p.pages for p in pages), opted_out_pages=sum(p.opted_out for p in pages))
    report.unreadable_pages, report.index_bytes_read, parts = sum(p.unreadable for p in pages), match.bytes_read, []
    for result in run.results:
        if result.extra:  # a record that crashed its worker has none
            parts.append(result.extra["entries"])
            report.add(result.extra)
            report.clusters += sum(result.extra["formats"].values())
    report.shards, report.shard_samples = engine.map(write_webdataset, [WebDatasetJob(storage, drop, config)])[0]
    entries = phash_index.EntriesJob(storage, drop, tuple(parts), match.basis, config.hamming_k, config.hash_bands,
                                     config.index_buckets)  # fmt: skip
    report.digest = engine.map(phash_index.write_entries_parts, [entries])[0]
    remove_post_commit_staging(storage, ASSET, drop)
    report.stale_drops = phash_index.stale_drops(storage)
    return ImageStageResult(run, report)
