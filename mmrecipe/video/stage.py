"""The video_clips stage of one drop on an engine: video records → clips with keyframes, hashes, motion, NSFW,
speech and captions.

The per-record work is `clip_analysis.analyse_video` (a pure function of one payload); the shard passes around
it are `video_shards`; this module is the driver, which holds no record:

1. **Pages.** Every HTML page of the drop is scanned for `<video>` references, titles, aria-labels,
   `<track>` files and opt-outs in shards (`page_pass`); the driver merges them (`captions.VideoCaptionIndex`),
   reads the track files from the same drop and stages each video record's caption per shard.
2. **Analysis** per shard (`analyse_pass`, the GPU pass): HTTP status, opt-out (a referencing page's robots
   directives, or the video's own `X-Robots-Tag`), then the payload streamed from the WARC into `analyse_video`;
   a bad video is rejected with its decoding reason; clip filters `clip_too_short`, `static_clip`, `nsfw`.
3. **Dedup** of every candidate clip, in WARC order, against earlier drops' kept clips and this drop's earlier
   clips (`clip_index`, the image index's `decide`); the decisions are staged per shard.
4. **Publish** per shard (`publish_pass` through `run_stage`, one commit): one kept row per kept clip (its MP4
   re-encoded), one rejects row per dropped clip or per record that yields no clip (rejected, opted out, HTTP
   error); then WebDataset shards (`<clip>.mp4/.jpg/.txt/.json`) of captioned kept clips and the drop's clip
   index entries.

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
import pyarrow.compute as pc

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
from mmrecipe.html_pages import unreadable_pages
from mmrecipe.images.captions import canonical_url, caption_coverage
from mmrecipe.images.phash_index import decide
from mmrecipe.images.webdataset import ShardWriter
from mmrecipe.stage_output import (
    PROVENANCE_COLUMNS,
    REJECTS,
    SIDE,
    STAGING,
    StageOutput,
    commit_version,
    committed_parts,
    iter_stage_rows,
    read_stage_table,
    stage_prefix,
)
from mmrecipe.storage import Storage
from mmrecipe.video import clip_index
from mmrecipe.video.captions import Cue, VideoCaptionIndex, parse_track
from mmrecipe.video.clip_analysis import ClipSettings, Scorer
from mmrecipe.video.clip_encoding import ClipEncoding
from mmrecipe.video.shots import DETECTOR
from mmrecipe.video.video_shards import (
    CLIP_SCHEMA,
    DECISION_SCHEMA,
    AnalysedShard,
    PublishVideoShard,
    VideoPass,
    VideoShard,
    analyse_crashed,
    analyse_pass,
    page_pass,
    publish_pass,
    write_captions,
)
from mmrecipe.warc_index import RecordReader, normalize_uri

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


def collect_captions(engine: Engine, storage: Storage, drop: str, shard_bytes: int) -> VideoCaptionIndex:
    """The drop's video references, from its HTML pages scanned in shards (unreadable pages are counted)."""
    index = VideoCaptionIndex()
    shards = plan_shards(storage, drop, "html", shard_bytes)
    for results in engine.run(partial(page_pass, storage), shards, partial(unreadable_pages, storage)):
        for scans in results:
            for scan in scans:
                if scan is None:
                    index.unreadable_pages += 1
                else:
                    index.add_page(*scan)
    return index


def track_reader(storage: Storage, drop: str, index: VideoCaptionIndex, reader: RecordReader) -> Callable:
    """A reader of the cues of the drop's track files by URL (the files the pages name, read once each)."""
    wanted, cols = index.track_urls(), ["warc_path", "warc_offset", "warc_length", "target_uri"]
    responses = storage.dataset(committed_parts(storage, RAW_CRAWL, drop)).to_table(
        filter=(pc.field("record_type") == "response") & (pc.field("http_status") == 200), columns=cols
    )
    where = {canonical_url(normalize_uri(r["target_uri"])): r for r in responses.to_pylist()}
    cache: dict[str, list[Cue]] = {}

    def track(url: str) -> list[Cue]:
        if url not in cache:
            r = where.get(url) if url in wanted else None
            cache[url] = (
                parse_track(reader.read(r["warc_path"], r["warc_offset"], r["warc_length"]).payload, url) if r else []
            )
        return cache[url]

    return track


def captioned_shards(
    engine: Engine, storage: Storage, drop: str, shard_bytes: int
) -> tuple[list[VideoShard], VideoCaptionIndex]:
    """The drop's video shards, each with the captions of its records staged, and the drop's caption index."""
    index = collect_captions(engine, storage, drop, shard_bytes)
    urls = read_records(storage, drop, "video", columns=["target_uri"])["target_uri"].to_pylist()
    staging = storage.uri(stage_prefix(ASSET, drop, STAGING), "passes")
    shards = [VideoShard(**vars(s), staging=staging) for s in plan_shards(storage, drop, "video", shard_bytes)]
    with RecordReader(storage) as reader:
        track = track_reader(storage, drop, index, reader)
        for shard in shards:
            write_captions(storage, shard, [index.caption_for(u, track) for u in urls[shard.start : shard.stop]])
    return shards, index


def decide_drop(storage: Storage, drop: str, analysed: list[AnalysedShard], cfg: VideoStageConfig) -> tuple[
    list[PublishVideoShard], dict[str, str]
]:  # fmt: skip
    """Dedup decisions for every candidate clip in WARC order, staged per shard; and the basis they used."""
    prior, basis = clip_index.load_prior(storage, drop)
    cands = sorted((pos, index, c) for a in analysed for pos, index, c in a.candidates)
    decided = decide([c for _, _, c in cands], prior, cfg.hamming_k, cfg.hash_bands)
    by_pos = {(pos, index): d for (pos, index, _), d in zip(cands, decided, strict=True)}
    shards = []
    for a in analysed:
        rows = [
            {"pos": pos, "clip_index": index, "kept": d.kept, "cluster": d.cluster, "reason": d.reason,
             "hamming": d.hamming, "owner": d.owner, "owner_drop": d.owner_drop}
            for (pos, index), d in by_pos.items() if a.shard.start <= pos < a.shard.stop
        ]  # fmt: skip
        uri = f"{a.shard.folder}/decisions.parquet"
        storage.write_table(uri, pa.Table.from_pylist(rows, schema=DECISION_SCHEMA))
        shards.append(PublishVideoShard(**vars(a.shard), decisions=uri))
    return shards, basis


def shards_prefix(storage: Storage, drop: str) -> str:
    """Where a drop's WebDataset shards of clips live."""
    return storage.uri(stage_prefix(ASSET, drop, SIDE), "shards")


def write_webdataset(storage: Storage, drop: str, config: VideoStageConfig) -> ShardWriter:
    """The drop's WebDataset shards of kept clips (captioned ones, unless `shard_uncaptioned`), from its data."""
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
    return shards


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
    shards, captions = captioned_shards(engine, storage, drop, shard_bytes)
    ran = (analyse_engine or engine).run(partial(analyse_pass, job), shards, partial(analyse_crashed, job))
    analysed = [a for results in ran for a in results]
    publish, basis = decide_drop(storage, drop, analysed, config)
    version = fingerprint(ASSET, CODE_VERSION, config, scorer, transcriber, basis,
                          commit_version(storage, RAW_CRAWL, drop))  # fmt: skip
    schema = CLIP_SCHEMA.with_metadata({NSFW_THRESHOLD_KEY: str(config.nsfw_threshold).encode()})
    run = run_stage(engine, ShardStage(ASSET, drop, storage, schema, publish_pass, job, version), publish)
    run.steps = StepStats.merged([*(a.steps for a in analysed), run.steps])
    report = VideoStageReport(pages=captions.pages, opted_out_pages=captions.opted_out_pages)
    entries = []
    for a in analysed:
        report.video_seconds += a.video_seconds
        report.seconds.update(a.seconds)
        report.containers.update(a.containers)
    for r in run.results:
        if r.extra:  # a record that crashed its worker has none
            entries += r.extra["entries"]
            report.add(r.extra)
    webdataset = write_webdataset(storage, drop, config)
    report.shards, report.shard_samples = webdataset.close(), webdataset.samples
    table = pa.Table.from_pylist(entries, schema=clip_index.ENTRY_SCHEMA)
    report.digest = clip_index.write_entries(storage, drop, table, basis, config.hamming_k)
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
