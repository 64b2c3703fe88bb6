"""The video_clips stage of one drop on an engine: video records → clips with keyframes, hashes, motion, NSFW,
speech and captions.

The per-record work is `clip_analysis.analyse_video` (a pure function of one payload); the shard passes around
it are `video_shards`; this module is the driver, which holds no record:

1. **Captions.** Every HTML page of the drop is scanned for `<video>` references, titles, aria-labels,
   `<track>` files and opt-outs in shards (`caption_pass`, staged per shard); a task finds the drop's records of
   the track files they name (`locate_tracks`), and a task per video shard stages each of its records' caption
   and opt-out from the references to its URL and its track cues (`stage_captions`, `captions.VideoCaptionIndex`).
2. **Analysis** per shard (`analyse_pass`, the GPU pass): HTTP status, opt-out (a referencing page's robots
   directives, or the video's own `X-Robots-Tag`), then the payload streamed from the WARC into `analyse_video`;
   a bad video is rejected with its decoding reason; clip filters `clip_too_short`, `static_clip`, `nsfw`.
3. **Dedup** of the candidate clips, in WARC order, against earlier drops' kept clips and this drop's earlier
   clips, with the image index's machinery: tasks find the earlier drops' kept clips the candidates can match
   (`clip_index.match_prior`) and the candidates with a duplicate edge (`phash_index.duplicate_edges`); the
   others are kept. Only the edge-holding ones are decided (`phash_index.decide`, which gives them the decisions
   they get among all); their decisions are staged per shard.
4. **Publish** per shard (`publish_pass` through `run_stage`, one commit): one kept row per kept clip (its MP4
   re-encoded), one rejects row per dropped clip or per record that yields no clip (rejected, opted out, HTTP
   error), and the shard's clip index entries (staged); then, in engine tasks, WebDataset shards
   (`<clip>.mp4/.jpg/.txt/.json`) of captioned kept clips from the published rows (`write_webdataset`) and the
   drop's clip index from the staged entries (`clip_index.write_entries_parts`).

The driver holds no video, caption or index entry: three 64-bit numbers per candidate clip (`candidate_key`,
pHash, byte-hash key), and the decisions of the candidates with a duplicate edge.

Rows are clips, so `in = kept + dropped + rejected` counts clips plus the records that yield none; every
video record appears in the kept rows or the rejects (`video_conservation`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa

from mmrecipe.audio.transcription import TranscriberSettings
from mmrecipe.conservation import Conservation
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
from mmrecipe.images.analysed_images import PageRefs, caption_pass, caption_pass_crashed, read_staged
from mmrecipe.images.captions import caption_coverage
from mmrecipe.images.phash_index import Candidate, Candidates, EntriesJob, decide, duplicate_edges
from mmrecipe.images.webdataset import ShardWriter, WebDatasetJob
from mmrecipe.stage_output import (
    PROVENANCE_COLUMNS,
    REJECTS,
    SIDE,
    STAGING,
    StageOutput,
    commit_version,
    committed_parts,
    iter_stage_rows,
    post_commit_staging,
    read_stage_table,
    remove_post_commit_staging,
    stage_prefix,
)
from mmrecipe.storage import Storage
from mmrecipe.video import clip_index
from mmrecipe.video.captioned_videos import (
    VIDEO_REF_SCHEMA,
    VideoShard,
    locate_tracks,
    scan_video_page,
    stage_captions,
)
from mmrecipe.video.clip_analysis import ClipSettings, Scorer
from mmrecipe.video.clip_encoding import ClipEncoding
from mmrecipe.video.shots import DETECTOR
from mmrecipe.video.video_shards import (
    CLIP_BITS,
    CLIP_SCHEMA,
    DECISION_SCHEMA,
    AnalysedShard,
    PublishVideoShard,
    VideoPass,
    analyse_crashed,
    analyse_pass,
    publish_pass,
)

ASSET = clip_index.ASSET
CODE_VERSION = "2"  # 2: shard passes, payloads streamed from the WARC
NSFW_THRESHOLD_KEY = b"mmrecipe.nsfw_threshold"  # in the kept table's schema: what the NSFW check holds it to
CLIP_REASONS = ("clip_too_short", "static_clip", "nsfw", "near_duplicate", "exact_duplicate")


@dataclass(frozen=True)
class VideoStageConfig:
    """Everything that decides the stage's output."""

    clips: ClipSettings = field(default_factory=ClipSettings)
    encoding: ClipEncoding = field(default_factory=ClipEncoding)
    min_motion: float = 0.0005  # mean grey change per frame; a still frame re-encoded measures ~1e-6
    nsfw_threshold: float = 0.5
    hamming_k: int = 10
    hash_bands: int = 4
    shard_samples: int = 200
    shard_uncaptioned: bool = False


@dataclass
class VideoStageReport:
    """What the stage did beyond the counts."""

    records: int = 0
    records_with_clips: int = 0
    clips: int = 0
    video_seconds: float = 0.0
    seconds: Counter[str] = field(default_factory=Counter)
    containers: Counter[str] = field(default_factory=Counter)
    caption_sources: Counter[str] = field(default_factory=Counter)
    transcripts: Counter[str] = field(default_factory=Counter)
    pages: int = 0
    opted_out_pages: int = 0
    shards: list[str] = field(default_factory=list)
    shard_samples: int = 0
    digest: str = ""
    stale_drops: list[str] = field(default_factory=list)

    @property
    def caption_coverage(self) -> float:
        return caption_coverage(self.caption_sources)

    def add(self, shard: Mapping[str, Any]) -> None:
        """Add one published shard's summary (`video_shards.publish_pass`)."""
        self.records += shard["records"]
        self.records_with_clips += shard["records_with_clips"]
        self.clips += shard["clips"]
        self.caption_sources.update(shard["caption_sources"])
        self.transcripts.update(shard["transcripts"])


@dataclass
class VideoStageResult:
    """The published stage run and its report."""

    run: StageRun
    report: VideoStageReport

    @property
    def output(self) -> StageOutput:
        return self.run.output


def captioned_shards(
    engine: Engine, storage: Storage, drop: str, shard_bytes: int
) -> tuple[list[VideoShard], list[PageRefs]]:
    """The drop's video shards, each with the captions of its records staged (in engine tasks, from the page
    references pass 0 staged), and what pass 0 found per shard of HTML pages."""
    staging = storage.uri(stage_prefix(ASSET, drop, STAGING), "passes")
    pages = plan_shards(storage, drop, "html", shard_bytes)
    scan = partial(caption_pass, storage, staging, scan=scan_video_page, schema=VIDEO_REF_SCHEMA)
    refs = [r for results in engine.run(scan, pages, partial(caption_pass_crashed, storage, staging)) for r in results]
    uris = tuple(r.uri for r in refs if r.uri)
    tracks = engine.map(partial(locate_tracks, storage, drop, f"{staging}/tracks.parquet"), [uris])[0]
    shards = [VideoShard(**vars(s), staging=staging) for s in plan_shards(storage, drop, "video", shard_bytes)]
    engine.map(partial(stage_captions, storage, uris, tracks), shards)
    return shards, refs


def decide_drop(
    engine: Engine, storage: Storage, drop: str, analysed: list[AnalysedShard], cfg: VideoStageConfig
) -> tuple[list[PublishVideoShard], dict[str, str]]:
    """Dedup decisions of the candidate clips with a duplicate edge, staged per shard; and the basis they used."""
    cands = Candidates.take(analysed)
    k, bands = cfg.hamming_k, cfg.hash_bands
    prior, basis = clip_index.match_prior(storage, drop, cands.phashes, cands.byte_keys, k, bands, engine.map)
    edges = cands.positions[duplicate_edges(cands.phashes, cands.byte_keys, prior, k, bands, engine.map)].tolist()
    mine = {a.shard.span: [e for e in edges if a.shard.start << CLIP_BITS <= e < a.shard.stop << CLIP_BITS]
            for a in analysed}  # fmt: skip
    staged = read_staged(storage, [a.shard.candidates_uri for a in analysed if mine[a.shard.span]], set(edges),
                         ["key", "clip_id", "clip_key", "phash"], key="key")  # fmt: skip
    by_key = {r["key"]: Candidate(r["clip_id"], r["clip_key"], r["phash"]) for r in staged}
    order = sorted(by_key)
    decided = dict(zip(order, decide([by_key[e] for e in order], prior, k, bands), strict=True))
    shards, entries = [], post_commit_staging(storage, ASSET, drop, "index_entries")
    for a in analysed:
        rows = [
            {"pos": e >> CLIP_BITS, "clip_index": e & ((1 << CLIP_BITS) - 1), "kept": d.kept, "cluster": d.cluster,
             "reason": d.reason, "hamming": d.hamming, "owner": d.owner, "owner_drop": d.owner_drop}
            for e, d in ((e, decided[e]) for e in mine[a.shard.span])
        ]  # fmt: skip
        uri = f"{a.shard.folder}/decisions.parquet"
        storage.write_table(uri, pa.Table.from_pylist(rows, schema=DECISION_SCHEMA))
        shards.append(PublishVideoShard(**vars(a.shard), decisions=uri, entries=entries))
    return shards, basis


def shards_prefix(storage: Storage, drop: str) -> str:
    """Where a drop's WebDataset shards of clips live."""
    return storage.uri(stage_prefix(ASSET, drop, SIDE), "shards")


def write_webdataset(job: WebDatasetJob) -> tuple[list[str], int]:
    """The drop's WebDataset shards of kept clips (captioned ones, unless `shard_uncaptioned`), from its data:
    the published shard URIs and their sample count."""
    storage, drop, config = job.storage, job.drop, job.config
    shards = ShardWriter(storage, shards_prefix(storage, drop), config.shard_samples)
    keys = [*PROVENANCE_COLUMNS, "clip_id", "url", "page_url", "start_s", "end_s", "caption_source"]
    cols = [*keys, "transcript", "segments", "phash", "motion", "caption", "keyframe_jpeg"]
    mp4s = (
        r for uri in committed_parts(storage, ASSET, drop, side="clip_mp4") for r in storage.read_table(uri).to_pylist()
    )
    try:
        for row in iter_stage_rows(storage, ASSET, drop, columns=cols):
            mp4 = next(mp4s)
            assert mp4["clip_id"] == row["clip_id"], f"clip MP4s out of step with the kept clips at {row['clip_id']}"
            if row["caption"] or config.shard_uncaptioned:
                meta = {k: row[k] for k in keys} | {"transcript": row["transcript"], "segments": row["segments"]}
                meta |= {"phash": f"{row['phash'] & (2**64 - 1):016x}", "detector": DETECTOR, "motion": row["motion"]}
                shards.add(row["clip_id"], row["keyframe_jpeg"], row["caption"], meta, {"mp4": mp4["mp4"]})
    except BaseException:
        shards.abort()
        raise
    return shards.close(), shards.samples


def run_video_stage(
    storage: Storage,
    drop: str,
    config: VideoStageConfig = VideoStageConfig(),
    scorer: Callable[[], Scorer] | None = None,
    transcriber: TranscriberSettings | None = None,
    engine: Engine | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    analyse_engine: Engine | None = None,
) -> VideoStageResult:
    """Run the stage for one drop on `engine` (default: inline): publish its tables, shards and clip index entries.

    `scorer` makes the NSFW scorer (once per worker that analyses a video); without it clips are not NSFW-scored
    (`nsfw_score` null). Without `transcriber`, clips get no transcript. The analysis pass runs on
    `analyse_engine` if given: the same engine with the stage's GPU share per Ray task."""
    engine = engine or LocalEngine(1)
    job = VideoPass(storage, config, scorer, transcriber)
    shards, pages = captioned_shards(engine, storage, drop, shard_bytes)
    ran = (analyse_engine or engine).run(partial(analyse_pass, job), shards, partial(analyse_crashed, job))
    analysed = [a for results in ran for a in results]
    publish, basis = decide_drop(engine, storage, drop, analysed, config)
    version = fingerprint(ASSET, CODE_VERSION, config, scorer, transcriber, basis,
                          commit_version(storage, RAW_CRAWL, drop))  # fmt: skip
    schema = CLIP_SCHEMA.with_metadata({NSFW_THRESHOLD_KEY: str(config.nsfw_threshold).encode()})
    run = run_stage(engine, ShardStage(ASSET, drop, storage, schema, publish_pass, job, version), publish)
    run.steps = StepStats.merged([*(a.steps for a in analysed), run.steps])
    report = VideoStageReport(pages=sum(p.pages - p.unreadable for p in pages))
    report.opted_out_pages, parts = sum(p.opted_out for p in pages), []
    for a in analysed:
        report.video_seconds += a.video_seconds
        report.seconds.update(a.seconds)
        report.containers.update(a.containers)
    for r in run.results:
        if r.extra:  # a record that crashed its worker has none
            parts.append(r.extra["entries"])
            report.add(r.extra)
    report.shards, report.shard_samples = engine.map(write_webdataset, [WebDatasetJob(storage, drop, config)])[0]
    entries = EntriesJob(storage, drop, tuple(parts), basis, config.hamming_k, config.hash_bands, 1)
    report.digest = engine.map(clip_index.write_entries_parts, [entries])[0]
    remove_post_commit_staging(storage, ASSET, drop)
    report.stale_drops = clip_index.stale_drops(storage)
    return VideoStageResult(run, report)


def video_conservation(storage: Storage, drop: str) -> Conservation:
    """Every video record of raw_crawl in the kept clips or the rejects; a record-level outcome at most once, alone."""
    inputs = read_records(storage, drop, "video", columns=["record_id"])["record_id"].to_pylist()
    kept = read_stage_table(storage, ASSET, drop, columns=["record_id", "clip_id"])
    rejects = read_stage_table(storage, ASSET, drop, REJECTS, ["record_id", "reason"]).to_pylist()
    record_level = Counter(r["record_id"] for r in rejects if r["reason"] not in CLIP_REASONS)
    with_clips = set(kept["record_id"].to_pylist()) | {r["record_id"] for r in rejects if r["reason"] in CLIP_REASONS}
    out = with_clips | set(record_level)
    doubled = sum(n - 1 for n in record_level.values()) + len(with_clips & set(record_level))
    clip_ids = kept["clip_id"].to_pylist()
    return Conservation(
        inputs=len(inputs),
        kept=kept.num_rows,
        dropped_or_rejected=len(rejects),
        lost=sorted(set(inputs) - out),
        unexpected=sorted(out - set(inputs)),
        duplicated=doubled + len(clip_ids) - len(set(clip_ids)),
        duplicate_inputs=len(inputs) - len(set(inputs)),
    )
