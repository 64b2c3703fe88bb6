"""The shard passes of video_clips: pages scanned, records analysed into clips, clips published.

The driver (`mmrecipe.video.stage`) runs them on an engine, and makes the dedup decisions between them:

0. `captioned_videos`: the captions of every shard's records, staged from the drop's HTML pages in tasks.
1. `analyse_pass` on shards of video records (the GPU pass: NSFW and ASR; its Ray tasks ask for the stage's
   `num_gpus`): HTTP status, opt-out, then the payload streamed into a scratch file (`payload.VideoRecord`)
   and `analyse_video`, then the clip filters (`clip_too_short`, `static_clip`, `nsfw`). It stages one row
   per record, one per clip and one per dedup candidate, and returns only the candidates' keys
   (`candidate_key`), pHashes and byte-hash keys as arrays.
2. `publish_pass` through `run_stage`: the clips, re-encoded (kept ones) from the payload streamed again, as
   kept rows, drops and rejects in record order (a candidate without a staged decision had no duplicate edge:
   kept, in its own cluster); the kept clips' MP4s as the side table `clip_mp4`; the shard's clip index
   entries (staged, named in `extra`) and histograms.

A record's position is its row in the drop's sorted video records (`shard.start + i`). Byte-identical
payloads within a shard are analysed once. A record that kills its worker is rejected `worker_crashed`.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mmrecipe.audio.transcribed_audio import SEGMENT_TYPE
from mmrecipe.audio.transcription import Transcriber, TranscriberSettings
from mmrecipe.engine import WORKER_CRASHED, ShardOutput, StepStats, read_shard, worker_cached
from mmrecipe.images.phash_bands import sha_keys
from mmrecipe.opt_out import OPT_OUT_REASON, opts_out_of_images, robots_directives
from mmrecipe.stage_output import PROVENANCE_COLUMNS, PROVENANCE_FIELDS
from mmrecipe.storage import Storage
from mmrecipe.video.captioned_videos import VideoShard, read_captions
from mmrecipe.video.captions import VideoCaption
from mmrecipe.video.clip_analysis import Clip, Scorer, analyse_video
from mmrecipe.video.clip_encoding import encode_clips
from mmrecipe.video.clip_index import ENTRY_SCHEMA
from mmrecipe.video.decoding import VideoRejected
from mmrecipe.video.payload import VideoRecord
from mmrecipe.video.shots import DETECTOR
from mmrecipe.warc_index import normalize_uri

INPUT_COLUMNS = [*PROVENANCE_COLUMNS, "warc_length", "target_uri", "payload_sha256"]
ANALYSED = "analysed"  # a record's outcome when it has clips (rows in the clips table)
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


RECORD_SCHEMA = pa.schema(
    [
        pa.field("pos", pa.int64(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),  # analysed, dropped or rejected
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        *(CLIP_SCHEMA.field(n).with_nullable(True) for n in ("container", "codec", "width", "height", "fps")),
    ]
)
_CLIP_FEATURES = ("keyframe_times", "keyframe_phashes", "phash", "keyframe_jpeg", "motion", "nsfw_score", "transcript",
                  "segments", "transcript_status")  # fmt: skip
CLIP_ROW_SCHEMA = pa.schema(
    [
        pa.field("pos", pa.int64(), nullable=False),
        pa.field("clip_index", pa.int32(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
        *(CLIP_SCHEMA.field(n) for n in _CLIP_FEATURES),
        pa.field("reason", pa.string()),  # a clip filter's drop (null: a dedup candidate)
        pa.field("detail", pa.string()),
    ]
)
CANDIDATE_SCHEMA = pa.schema(
    [
        pa.field("key", pa.int64(), nullable=False),  # `candidate_key`
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("clip_key", pa.string(), nullable=False),
        pa.field("phash", pa.int64(), nullable=False),
    ]
)
CLIP_BITS = 20  # a video yields fewer than 2**20 clips (`max_duration_s` / `min_clip_s`)
DECISION_SCHEMA = pa.schema(
    [
        pa.field("pos", pa.int64(), nullable=False),
        pa.field("clip_index", pa.int32(), nullable=False),
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("cluster", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("hamming", pa.int32()),
        pa.field("owner", pa.string()),
        pa.field("owner_drop", pa.string()),
    ]
)
MP4_SCHEMA = pa.schema([pa.field("clip_id", pa.string(), nullable=False), pa.field("mp4", pa.binary(), nullable=False)])


def clip_id(row: Mapping[str, Any], index: int) -> str:
    """A clip's id: its record's id and its index in the video (no dots: a WebDataset key)."""
    return f"{row['record_id']}-c{index:03d}"


def candidate_key(pos: int, index: int) -> int:
    """A candidate clip's key: its record's drop position and its index in the video (sorts in WARC order)."""
    return pos << CLIP_BITS | index


@dataclass(frozen=True)
class VideoPass:
    """What every shard of one run needs (picklable): the lake, the config, and the models' makers."""

    lake: Storage
    cfg: Any  # stage.VideoStageConfig
    scorer: Callable[[], Scorer] | None = None  # built once per worker process
    transcriber: TranscriberSettings | None = None

    def nsfw(self) -> Scorer | None:
        return None if self.scorer is None else worker_cached(("video-nsfw", self.scorer), self.scorer)

    def asr(self) -> Transcriber | None:
        t = self.transcriber
        return None if t is None else worker_cached(("transcriber", t), lambda: Transcriber(t))


@dataclass
class AnalysedShard:
    """What pass 1 of a shard returns: its candidates for dedup (as arrays) and its totals (no rows, no pixels)."""

    shard: VideoShard
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # `candidate_key`s
    phashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    byte_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # `sha_keys` of clip keys
    steps: dict[str, StepStats] = field(default_factory=dict)
    video_seconds: float = 0.0
    seconds: Counter[str] = field(default_factory=Counter)
    containers: Counter[str] = field(default_factory=Counter)


def _screen(rec: VideoRecord, caption: VideoCaption) -> tuple[str, str, str] | None:
    """The record's outcome if it goes no further: HTTP error, or opted out by its page or its own headers."""
    if rec.http_status is None or not 200 <= rec.http_status < 300:
        return "rejected", "http_error", f"HTTP status {rec.http_status} for a video/* response"
    if caption.opt_out_page:
        return "dropped", OPT_OUT_REASON, f"embedded by {caption.opt_out_page} (noai/noimageai)"
    if opts_out_of_images(robots_directives(rec.http_headers)):
        return "dropped", OPT_OUT_REASON, f"X-Robots-Tag: {rec.http_headers.get('x-robots-tag', '')}"
    return None


def _clip_policy(clip: Clip, cfg: Any) -> tuple[str, str] | None:
    if clip.duration < cfg.clips.shots.min_clip_s:
        return "clip_too_short", f"{clip.duration:.2f} s < {cfg.clips.shots.min_clip_s} s"
    if clip.motion < cfg.min_motion:
        return "static_clip", f"motion {clip.motion:.6f} < {cfg.min_motion}"
    if clip.nsfw_score is not None and clip.nsfw_score >= cfg.nsfw_threshold:
        return "nsfw", f"NudeNet keyframe score {clip.nsfw_score:.3f} >= {cfg.nsfw_threshold}"
    return None


def _clip_row(pos: int, clip: Clip, why: tuple[str, str] | None) -> dict[str, Any]:
    row = {k: getattr(clip, k) for k in _CLIP_FEATURES} | {"pos": pos, "clip_index": clip.index, "start": clip.start}
    row["end"] = clip.end
    return row | {"reason": why[0] if why else None, "detail": why[1] if why else None}


def analyse_pass(job: VideoPass, shard: VideoShard) -> AnalysedShard:
    """Pass 1 over one shard: stage a row per record and per clip at `<shard folder>/{records,clips}.parquet`."""
    records, captions = read_shard(job.lake, shard, INPUT_COLUMNS).to_pylist(), read_captions(job.lake, shard)
    result = AnalysedShard(shard)
    steps = {n: StepStats() for n in ("screen", "analyse", "clip_filters")}
    rows: list[dict[str, Any]] = []
    clips: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []
    seen: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}  # payload sha256 -> its rows
    for i, row in enumerate(records):
        pos, started = shard.start + i, time.perf_counter()
        screened = started
        try:
            with VideoRecord(job.lake, row["warc_path"], row["warc_offset"], row["warc_length"]) as rec:
                outcome, screened = _screen(rec, captions[i]), time.perf_counter()
                if outcome is None and row["payload_sha256"] not in seen:
                    seen[row["payload_sha256"]] = _analyse(job, rec, row["payload_sha256"], result)
        except ValueError as e:
            outcome = ("rejected", "unreadable_record", str(e))
        steps["screen"].seen += 1
        steps["screen"].seconds += screened - started
        if outcome is not None:
            steps["screen"].seconds += time.perf_counter() - screened
            step = steps["screen"]
            (step.dropped if outcome[0] == "dropped" else step.rejected)[outcome[1]] += 1
            rows.append({"pos": pos, **dict(zip(("outcome", "reason", "detail"), outcome, strict=True))})
            continue
        steps["analyse"].seen += 1
        steps["analyse"].seconds += time.perf_counter() - screened
        record, its_clips = seen[row["payload_sha256"]]
        rows.append({**record, "pos": pos})
        if record["outcome"] != ANALYSED:
            steps["analyse"].rejected[record["reason"]] += 1
        for c in its_clips:
            clips.append({**c, "pos": pos})
            steps["clip_filters"].seen += 1
            if c["reason"]:
                steps["clip_filters"].dropped[c["reason"]] += 1
            else:
                key = candidate_key(pos, c["clip_index"])
                clip_key = f"{row['payload_sha256']}:{c['clip_index']}"
                candidates.append({"key": key, "clip_id": clip_id(row, c["clip_index"]), "clip_key": clip_key,
                                   "phash": c["phash"]})  # fmt: skip
    result.steps = steps
    _stage(job.lake, shard, rows, clips)
    job.lake.write_table(shard.candidates_uri, pa.Table.from_pylist(candidates, schema=CANDIDATE_SCHEMA))
    result.positions = np.array([c["key"] for c in candidates], np.int64)
    result.phashes = np.array([c["phash"] for c in candidates], np.int64)
    result.byte_keys = sha_keys([c["clip_key"] for c in candidates])
    return result


def _analyse(
    job: VideoPass, rec: VideoRecord, sha256: str, result: AnalysedShard
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One payload's record row and clip rows (pos 0: the caller sets it)."""
    try:
        spooled = rec.spool(job.cfg.clips.limits.max_bytes, sha256)
        analysis = analyse_video(spooled.path, job.cfg.clips, job.nsfw(), job.asr())
    except VideoRejected as e:
        return {"pos": 0, "outcome": "rejected", "reason": e.reason, "detail": e.detail}, []
    info = analysis.info
    result.video_seconds += analysis.duration_s
    result.seconds.update(analysis.seconds)
    result.containers[info.container] += 1
    record = {"pos": 0, "outcome": ANALYSED, "container": info.container, "codec": info.codec}
    record |= {"width": info.width, "height": info.height, "fps": round(info.fps, 4)}
    if not analysis.clips:
        record |= {"outcome": "rejected", "reason": "no_clips", "detail": "no clips"}
    return record, [_clip_row(0, c, _clip_policy(c, job.cfg)) for c in analysis.clips]


def _stage(lake: Storage, shard: VideoShard, rows: list[dict[str, Any]], clips: list[dict[str, Any]]) -> None:
    lake.write_table(f"{shard.folder}/records.parquet", pa.Table.from_pylist(rows, schema=RECORD_SCHEMA))
    lake.write_table(f"{shard.folder}/clips.parquet", pa.Table.from_pylist(clips, schema=CLIP_ROW_SCHEMA))


def analyse_crashed(job: VideoPass, shard: VideoShard, error: str) -> AnalysedShard:
    """The pass-1 result of a single record that kills its worker: staged as a `worker_crashed` reject."""
    rows = [{"pos": shard.start + i, "outcome": "rejected", "reason": WORKER_CRASHED, "detail": error}
            for i in range(shard.rows)]  # fmt: skip
    _stage(job.lake, shard, rows, [])
    return AnalysedShard(shard, steps={"screen": StepStats(shard.rows, rejected=Counter({WORKER_CRASHED: shard.rows}))})


@dataclass(frozen=True)
class PublishVideoShard(VideoShard):
    """A shard of pass 2: its staged pass-1 rows, the dedup decisions of its clips with a duplicate edge, and where
    it stages its clip index entries."""

    decisions: str = ""
    entries: str = ""

    @property
    def entries_part(self) -> str:
        return f"{self.entries}/entries-{self.start:010d}.parquet"  # a split shard's halves: one part each


def publish_pass(job: VideoPass, shard: PublishVideoShard, out: ShardOutput) -> Mapping[str, Any]:
    """Pass 2: the shard's clips (kept ones re-encoded), drops and rejects in record order, from staged rows."""
    lake = job.lake
    records, captions = read_shard(lake, shard, INPUT_COLUMNS).to_pylist(), read_captions(lake, shard)
    outcomes = {r["pos"]: r for r in lake.read_table(f"{shard.folder}/records.parquet").to_pylist()}
    clips: dict[int, list[dict[str, Any]]] = {}
    for c in lake.read_table(f"{shard.folder}/clips.parquet").to_pylist():
        clips.setdefault(c["pos"], []).append(c)
    decided = {(d["pos"], d["clip_index"]): d for d in lake.read_table(shard.decisions).to_pylist()}
    dedup, encode = StepStats(), StepStats()
    entries: list[dict[str, Any]] = []
    mp4_rows: list[dict[str, Any]] = []
    summary = {
        "records": 0,
        "records_with_clips": 0,
        "clips": 0,
        "caption_sources": Counter(),
        "transcripts": Counter(),
    }
    for i, row in enumerate(records):
        pos, o = shard.start + i, outcomes[shard.start + i]
        summary["records"] += 1
        if o["outcome"] != ANALYSED:
            (out.drop if o["outcome"] == "dropped" else out.reject)(row, o["reason"], o["detail"] or "")
            continue
        its = clips.get(pos, [])
        for c in its:  # a candidate without a duplicate edge is kept, in its own cluster
            if not c["reason"]:
                decided.setdefault((pos, c["clip_index"]), {"kept": True, "cluster": clip_id(row, c["clip_index"]),
                                                            "reason": None, "hamming": None})  # fmt: skip
        kept = [c for c in its if not c["reason"] and decided[(pos, c["clip_index"])]["kept"]]
        started = time.perf_counter()
        mp4s = _encode(job, row, kept) if kept else {}
        encode.seen, encode.seconds = encode.seen + len(kept), encode.seconds + time.perf_counter() - started
        summary["records_with_clips"] += int(bool(kept))
        for c in its:
            span = f"clip {c['clip_index']} [{c['start']:.2f}-{c['end']:.2f} s]"
            if c["reason"]:
                out.drop(row, c["reason"], f"{span}: {c['detail']}")
                continue
            d = decided[(pos, c["clip_index"])]
            entries.append(_entry(row, c, d))
            if not d["kept"]:
                where = f" in drop {d['owner_drop']}" if d["owner_drop"] else ""
                reason = d["reason"] or "near_duplicate"
                out.drop(row, reason, f"{span}: of {d['owner']}{where}, hamming {d['hamming']}")
                dedup.dropped[reason] += 1
                continue
            kept_row = _kept_row(row, o, c, d, captions[i], mp4s[c["clip_index"]])
            out.keep(kept_row)
            mp4_rows.append({"clip_id": kept_row["clip_id"], "mp4": mp4s[c["clip_index"]]})
            summary["clips"] += 1
            summary["caption_sources"][kept_row["caption_source"]] += 1
            summary["transcripts"][kept_row["transcript_status"]] += 1
    dedup.seen = len(entries)
    out.steps |= {"dedup": dedup, "encode": encode}
    out.write_side("clip_mp4", pa.Table.from_pylist(mp4_rows, schema=MP4_SCHEMA))
    lake.write_table(shard.entries_part, pa.Table.from_pylist(entries, schema=ENTRY_SCHEMA))
    return {**summary, "entries": shard.entries_part}


def _encode(job: VideoPass, row: Mapping[str, Any], kept: list[dict[str, Any]]) -> dict[int, bytes]:
    """The MP4 of each kept clip of a record, from its payload streamed again."""
    with VideoRecord(job.lake, row["warc_path"], row["warc_offset"], row["warc_length"]) as rec:
        path = rec.spool(job.cfg.clips.limits.max_bytes, row["payload_sha256"]).path
        spans = [(c["start"], c["end"]) for c in kept]
        mp4s = encode_clips(path, spans, job.cfg.encoding, job.cfg.clips.limits)
    return {c["clip_index"]: mp4 for c, mp4 in zip(kept, mp4s, strict=True)}


def _entry(row: Mapping[str, Any], c: Mapping[str, Any], d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "clip_id": clip_id(row, c["clip_index"]),
        **{k: row[k] for k in PROVENANCE_COLUMNS},
        "clip_key": f"{row['payload_sha256']}:{c['clip_index']}",
        "phash": c["phash"],
        "kept": d["kept"],
        "dedup_cluster": d["cluster"],
        "reason": d["reason"],
        "hamming": d["hamming"],
    }


def _kept_row(
    row: Mapping[str, Any], o: Mapping[str, Any], c: Mapping[str, Any], d: Mapping[str, Any], cap: VideoCaption,
    mp4: bytes,
) -> dict[str, Any]:  # fmt: skip
    caption, source = cap.for_span(c["start"], c["end"])
    return {
        **{k: row[k] for k in PROVENANCE_COLUMNS},
        "clip_id": clip_id(row, c["clip_index"]),
        "clip_index": c["clip_index"],
        "url": normalize_uri(row["target_uri"]),
        "page_url": cap.ref.page_url if cap.ref else None,
        **{k: o[k] for k in ("container", "codec", "width", "height", "fps")},
        "start_s": c["start"],
        "end_s": c["end"],
        "duration_s": round(c["end"] - c["start"], 4),
        "detector": DETECTOR,
        **{k: c[k] for k in _CLIP_FEATURES if k != "keyframe_jpeg"},
        "caption": caption,
        "caption_source": source,
        "dedup_cluster": d["cluster"],
        "sha256": row["payload_sha256"],
        "clip_sha256": hashlib.sha256(mp4).hexdigest(),
        "keyframe_jpeg": c["keyframe_jpeg"],
    }
