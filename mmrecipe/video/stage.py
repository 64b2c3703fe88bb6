"""The video_clips stage of one drop: video records → clips with keyframes, hashes, motion, NSFW, speech, captions.

The per-record work is `clip_analysis.analyse_video` (a pure function of one payload); this module is the
drop-level driver around it:

1. **Pages.** Every HTML page of the drop is scanned for `<video>` references, titles, aria-labels,
   `<track>` files and opt-outs (`captions.VideoCaptionIndex`); track files are read from the same drop.
2. **Per record** (in WARC order): HTTP status, opt-out (a referencing page's robots directives, or the
   video's own `X-Robots-Tag`), then `analyse_video`; a bad video is rejected with its decoding reason.
   Byte-identical payloads are analysed once.
3. **Per clip**: `clip_too_short`, `static_clip` (motion below `min_motion`) and `nsfw` drops, then
   near-duplicate decisions against earlier drops' kept clips and this drop's earlier clips (`clip_index`).
4. **Output** in WARC order: one kept row per kept clip, one rejects row per dropped clip or per record
   that yields no clip (rejected, opted out, HTTP error), WebDataset shards (`<clip>.mp4/.jpg/.txt/.json`)
   of captioned kept clips, and the drop's clip index entries.

Rows are clips, so `in = kept + dropped + rejected` counts clips plus the records that yield none; every
video record appears in the kept rows or the rejects (`video_conservation`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mmrecipe.audio.transcribed_audio import SEGMENT_TYPE
from mmrecipe.audio.transcription import Transcriber
from mmrecipe.conservation import Conservation
from mmrecipe.crawl_index import RAW_CRAWL, read_records
from mmrecipe.images.captions import canonical_url, caption_coverage
from mmrecipe.images.phash_index import Candidate, Decision, decide
from mmrecipe.images.webdataset import ShardWriter
from mmrecipe.opt_out import OPT_OUT_REASON, opts_out_of_images, robots_directives
from mmrecipe.stage_output import (
    PROVENANCE_COLUMNS,
    PROVENANCE_FIELDS,
    REJECTS,
    SIDE,
    StageOutput,
    StageWriter,
    committed_parts,
    read_stage_table,
    stage_prefix,
)
from mmrecipe.storage import Storage
from mmrecipe.video import clip_index
from mmrecipe.video.captions import Cue, VideoCaption, VideoCaptionIndex, parse_track, scan_page
from mmrecipe.video.clip_analysis import Clip, ClipSettings, Scorer, VideoAnalysis, analyse_video
from mmrecipe.video.clip_encoding import ClipEncoding, encode_clips
from mmrecipe.video.decoding import VideoRejected
from mmrecipe.video.shots import DETECTOR
from mmrecipe.warc_index import RecordReader, normalize_uri

ASSET = clip_index.ASSET
NSFW_THRESHOLD_KEY = b"mmrecipe.nsfw_threshold"  # in the kept table's schema: what the NSFW check holds it to
CLIP_REASONS = ("clip_too_short", "static_clip", "nsfw", "near_duplicate", "exact_duplicate")
CLIP_SCHEMA = pa.schema(
    [
        *PROVENANCE_FIELDS,
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("clip_index", pa.int32(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("page_url", pa.string()),
        pa.field("container", pa.string(), nullable=False),
        pa.field("codec", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("fps", pa.float64(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("detector", pa.string(), nullable=False),
        pa.field("keyframe_times", pa.list_(pa.float64()), nullable=False),
        pa.field("keyframe_phashes", pa.list_(pa.int64()), nullable=False),
        pa.field("phash", pa.int64(), nullable=False),  # the middle keyframe's; uint64 bits as int64
        pa.field("motion", pa.float64(), nullable=False),
        pa.field("nsfw_score", pa.float32()),
        pa.field("transcript", pa.string(), nullable=False),
        pa.field("segments", pa.list_(SEGMENT_TYPE)),  # times in the source video
        pa.field("transcript_status", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("caption_source", pa.string(), nullable=False),  # track, title, aria_label, surrounding_text, none
        pa.field("dedup_cluster", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),  # of the source payload
        pa.field("clip_sha256", pa.string(), nullable=False),  # of the re-encoded MP4 in the shards
        pa.field("keyframe_jpeg", pa.binary(), nullable=False),
    ]
)


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


@dataclass
class VideoStageResult:
    """The published output and its report."""

    output: StageOutput
    report: VideoStageReport


@dataclass
class _Record:
    """One video record on its way: its row, caption, and either a terminal outcome or its analysis."""

    row: dict[str, Any]
    caption: VideoCaption
    outcome: tuple[str, str, str] | None = None  # (dropped|rejected, reason, detail)
    analysis: VideoAnalysis | None = None
    clip_outcomes: dict[int, tuple[str, str]] = field(default_factory=dict)  # clip -> (reason, detail)
    decisions: dict[int, Decision] = field(default_factory=dict)


def collect_captions(storage: Storage, drop: str, reader: RecordReader) -> tuple[VideoCaptionIndex, Callable]:
    """The drop's video references, and a reader of the cues of its track files by URL."""
    index = VideoCaptionIndex()
    cols = ["warc_path", "warc_offset", "warc_length", "target_uri"]
    for order, page in enumerate(read_records(storage, drop, "html", columns=cols).to_pylist()):
        try:
            rec = reader.read(page["warc_path"], page["warc_offset"], page["warc_length"])
        except ValueError:
            index.unreadable_pages += 1
            continue
        index.add_page(*scan_page(rec.payload, normalize_uri(page["target_uri"]) or "", rec.http_headers, order))
    wanted = index.track_urls()
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

    return index, track


class VideoStage:
    """One run of the stage over one drop."""

    def __init__(
        self,
        storage: Storage,
        drop: str,
        config: VideoStageConfig,
        scorer: Callable[[], Scorer] | None,
        transcriber: Transcriber | None,
    ) -> None:
        self.storage, self.drop, self.cfg = storage, drop, config
        self.make_scorer, self.transcriber = scorer, transcriber
        self.scorer: Scorer | None = None
        self.reader = RecordReader(storage)
        self.report = VideoStageReport()
        self.records: list[_Record] = []

    def _payload(self, row: dict[str, Any]) -> tuple[bytes, dict[str, str], int | None]:
        rec = self.reader.read(row["warc_path"], row["warc_offset"], row["warc_length"])
        return rec.payload, rec.http_headers, rec.http_status

    def analyse_all(self) -> None:
        """Pass 1 and 2: pages, then every video record's outcome or analysis and its clips' policy drops."""
        index, track = collect_captions(self.storage, self.drop, self.reader)
        self.report.pages, self.report.opted_out_pages = index.pages, index.opted_out_pages
        seen: dict[str, VideoAnalysis | tuple[str, str, str]] = {}
        for row in read_records(self.storage, self.drop, "video").to_pylist():
            rec = _Record(row, index.caption_for(row["target_uri"], track))
            self.records.append(rec)
            rec.outcome = self._screen(rec)
            if rec.outcome is not None:
                continue
            sha = row["payload_sha256"]
            if sha not in seen:
                seen[sha] = self._analyse(self._payload(row)[0])
            found = seen[sha]
            if isinstance(found, tuple):
                rec.outcome = found
                continue
            rec.analysis = found
            self._clip_policy(rec)

    def _screen(self, rec: _Record) -> tuple[str, str, str] | None:
        try:
            _, headers, status = self._payload(rec.row)
        except ValueError as e:
            return "rejected", "unreadable_record", str(e)
        if status is None or not 200 <= status < 300:
            return "rejected", "http_error", f"HTTP status {status} for a video/* response"
        if rec.caption.opt_out_page:
            return "dropped", OPT_OUT_REASON, f"embedded by {rec.caption.opt_out_page} (noai/noimageai)"
        if opts_out_of_images(robots_directives(headers)):
            return "dropped", OPT_OUT_REASON, f"X-Robots-Tag: {headers.get('x-robots-tag', '')}"
        return None

    def _analyse(self, payload: bytes) -> VideoAnalysis | tuple[str, str, str]:
        if self.scorer is None and self.make_scorer is not None:  # loaded once a drop has a video to score
            self.scorer = self.make_scorer()
        try:
            analysis = analyse_video(payload, self.cfg.clips, self.scorer, self.transcriber)
        except VideoRejected as e:
            return "rejected", e.reason, e.detail
        self.report.video_seconds += analysis.duration_s
        self.report.seconds.update(analysis.seconds)
        self.report.containers[analysis.info.container] += 1
        return analysis

    def _clip_policy(self, rec: _Record) -> None:
        cfg = self.cfg
        for clip in rec.analysis.clips if rec.analysis else []:
            if clip.duration < cfg.clips.shots.min_clip_s:
                rec.clip_outcomes[clip.index] = (
                    "clip_too_short",
                    f"{clip.duration:.2f} s < {cfg.clips.shots.min_clip_s} s",
                )
            elif clip.motion < cfg.min_motion:
                rec.clip_outcomes[clip.index] = ("static_clip", f"motion {clip.motion:.6f} < {cfg.min_motion}")
            elif clip.nsfw_score is not None and clip.nsfw_score >= cfg.nsfw_threshold:
                rec.clip_outcomes[clip.index] = (
                    "nsfw",
                    f"NudeNet keyframe score {clip.nsfw_score:.3f} >= {cfg.nsfw_threshold}",
                )

    def decide(self, prior: Any) -> None:
        """Pass 3: near-duplicate decisions for every clip that passed the policy filters, in WARC order."""
        cands: list[tuple[_Record, Clip]] = [
            (rec, clip)
            for rec in self.records
            if rec.analysis is not None
            for clip in rec.analysis.clips
            if clip.index not in rec.clip_outcomes
        ]
        keys = [Candidate(clip_id(r.row, c.index), f"{r.row['payload_sha256']}:{c.index}", c.phash) for r, c in cands]
        for (rec, clip), d in zip(cands, decide(keys, prior, self.cfg.hamming_k, self.cfg.hash_bands), strict=True):
            rec.decisions[clip.index] = d

    def write(self, out: StageWriter, shards: ShardWriter) -> pa.Table:
        """Pass 4: kept clips, drops and rejects in WARC order, shards; returns the drop's clip index entries."""
        entries: list[dict[str, Any]] = []
        for rec in self.records:
            self.report.records += 1
            if rec.outcome is not None or rec.analysis is None:
                outcome, reason, detail = rec.outcome or ("rejected", "no_clips", "no clips")
                (out.drop if outcome == "dropped" else out.reject)(rec.row, reason, detail)
                continue
            kept = [c for c in rec.analysis.clips if c.index in rec.decisions and rec.decisions[c.index].kept]
            spans = [(c.start, c.end) for c in kept]
            mp4s = dict(
                zip(
                    [c.index for c in kept],
                    encode_clips(self._payload(rec.row)[0], spans, self.cfg.encoding, self.cfg.clips.limits)
                    if kept
                    else [],
                    strict=True,
                )
            )
            self.report.records_with_clips += int(bool(kept))
            for clip in rec.analysis.clips:
                span = f"clip {clip.index} [{clip.start:.2f}-{clip.end:.2f} s]"
                if clip.index in rec.clip_outcomes:
                    reason, detail = rec.clip_outcomes[clip.index]
                    out.drop(rec.row, reason, f"{span}: {detail}")
                    continue
                d = rec.decisions[clip.index]
                entries.append(self._entry(rec, clip, d))
                if not d.kept:
                    where = f" in drop {d.owner_drop}" if d.owner_drop else ""
                    out.drop(rec.row, d.reason or "near_duplicate", f"{span}: of {d.owner}{where}, hamming {d.hamming}")
                    continue
                row = self._kept_row(rec, clip, d, mp4s[clip.index])
                out.keep(row)
                self._account(row, mp4s[clip.index], shards)
        return pa.Table.from_pylist(entries, schema=clip_index.ENTRY_SCHEMA)

    def _entry(self, rec: _Record, clip: Clip, d: Decision) -> dict[str, Any]:
        return {
            "clip_id": clip_id(rec.row, clip.index),
            **{c: rec.row[c] for c in PROVENANCE_COLUMNS},
            "clip_key": f"{rec.row['payload_sha256']}:{clip.index}",
            "phash": clip.phash,
            "kept": d.kept,
            "dedup_cluster": d.cluster,
            "reason": d.reason,
            "hamming": d.hamming,
        }

    def _kept_row(self, rec: _Record, clip: Clip, d: Decision, mp4: bytes) -> dict[str, Any]:
        info = rec.analysis.info  # type: ignore[union-attr]
        caption, source = rec.caption.for_span(clip.start, clip.end)
        return {
            **{c: rec.row[c] for c in PROVENANCE_COLUMNS},
            "clip_id": clip_id(rec.row, clip.index),
            "clip_index": clip.index,
            "url": normalize_uri(rec.row["target_uri"]),
            "page_url": rec.caption.ref.page_url if rec.caption.ref else None,
            "container": info.container,
            "codec": info.codec,
            "width": info.width,
            "height": info.height,
            "fps": round(info.fps, 4),
            "start_s": clip.start,
            "end_s": clip.end,
            "duration_s": round(clip.duration, 4),
            "detector": DETECTOR,
            "keyframe_times": clip.keyframe_times,
            "keyframe_phashes": clip.keyframe_phashes,
            "phash": clip.phash,
            "motion": clip.motion,
            "nsfw_score": clip.nsfw_score,
            "transcript": clip.transcript,
            "segments": clip.segments,
            "transcript_status": clip.transcript_status,
            "caption": caption,
            "caption_source": source,
            "dedup_cluster": d.cluster,
            "sha256": rec.row["payload_sha256"],
            "clip_sha256": hashlib.sha256(mp4).hexdigest(),
            "keyframe_jpeg": clip.keyframe_jpeg,
        }

    def _account(self, row: dict[str, Any], mp4: bytes, shards: ShardWriter) -> None:
        rep = self.report
        rep.clips += 1
        rep.caption_sources[row["caption_source"]] += 1
        rep.transcripts[row["transcript_status"]] += 1
        if row["caption"] or self.cfg.shard_uncaptioned:
            keys = (*PROVENANCE_COLUMNS, "clip_id", "url", "page_url", "start_s", "end_s", "caption_source")
            meta = {k: row[k] for k in keys} | {"transcript": row["transcript"], "segments": row["segments"]}
            meta |= {"phash": f"{row['phash'] & (2**64 - 1):016x}", "detector": DETECTOR, "motion": row["motion"]}
            shards.add(row["clip_id"], row["keyframe_jpeg"], row["caption"], meta, {"mp4": mp4})

    def close(self) -> None:
        self.reader.close()


def clip_id(row: dict[str, Any], index: int) -> str:
    """A clip's id: its record's id and its index in the video (no dots: a WebDataset key)."""
    return f"{row['record_id']}-c{index:03d}"


def shards_prefix(storage: Storage, drop: str) -> str:
    """Where a drop's WebDataset shards of clips live."""
    return storage.uri(stage_prefix(ASSET, drop, SIDE), "shards")


def run_video_stage(
    storage: Storage,
    drop: str,
    config: VideoStageConfig = VideoStageConfig(),
    scorer: Callable[[], Scorer] | None = None,
    transcriber: Transcriber | None = None,
) -> VideoStageResult:
    """Run the stage for one drop: publish its tables, shards and clip index entries; return what it did.

    `scorer` makes the NSFW scorer (called only when the drop has a video to analyse); without it clips are
    not NSFW-scored (`nsfw_score` null). Without `transcriber`, clips get no transcript."""
    stage = VideoStage(storage, drop, config, scorer, transcriber)
    try:
        stage.analyse_all()
        prior, basis = clip_index.load_prior(storage, drop)
        stage.decide(prior)
        shards = ShardWriter(storage, shards_prefix(storage, drop), config.shard_samples)
        schema = CLIP_SCHEMA.with_metadata({NSFW_THRESHOLD_KEY: str(config.nsfw_threshold).encode()})
        with StageWriter(storage, ASSET, drop, schema) as out:
            try:
                entries = stage.write(out, shards)
            except BaseException:
                shards.abort()
                raise
            stage.report.shards = shards.close()
            stage.report.shard_samples = shards.samples
            output = out.close()
        stage.report.digest = clip_index.write_entries(storage, drop, entries, basis, config.hamming_k)
        stage.report.stale_drops = clip_index.stale_drops(storage)
        return VideoStageResult(output, stage.report)
    finally:
        stage.close()


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
