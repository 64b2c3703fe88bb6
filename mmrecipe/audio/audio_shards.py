"""The two shard passes of transcribed_audio, and what each returns to the driver.

A drop's audio records are cut into shards (spans of raw_crawl's audio rows). The driver runs:

1. `transcribe_shard` on every shard (the GPU pass): decode -> speech detection -> ASR -> transcript
   filters per record (or the stored clip outcomes of the same records, settings and model), PII
   redaction of the kept transcripts, and their MinHash dedup index entries. It returns counts,
   audio totals, step seconds and the entries: never the rows.
2. `transcript_postprocessing.dedup_verdicts` on the concatenated entries (drop level).
3. `publish_shard` on every shard: its stored outcomes plus the verdicts of its kept records become
   kept rows and rejects, both in record order, so the parts concatenated in shard order are the
   same table whatever the shard size.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mmrecipe.audio.clip_outcomes import load_outcomes, outcomes_key, outcomes_uri, shard_outcomes
from mmrecipe.audio.transcribed_audio import SCHEMA, AudioStageSettings, AudioStats, ClipOutcome
from mmrecipe.audio.transcript_postprocessing import Verdict, dedup_verdicts, redact_row, transcript_entries
from mmrecipe.audio.transcription import Transcriber
from mmrecipe.dedup import IndexEntries
from mmrecipe.stage_output import StageCounts, StageOutput, StageWriter
from mmrecipe.storage import Storage

ASSET = "transcribed_audio"
STEPS = ("read", "decode", "speech_detection", "asr", "transcript_filters", "pii_redaction", "dedup")
STEP_OF_REASON = {
    "unreadable_record": "read",
    "http_error": "read",
    "too_little_speech": "speech_detection",
    "exact_duplicate": "dedup",
    "near_duplicate": "dedup",
}  # every other reject is the decoder's, every other drop the transcript filters'


def step_of(outcome: str, reason: str) -> str:
    """The step that decided a dropped or rejected record."""
    return STEP_OF_REASON.get(reason, "decode" if outcome == "rejected" else "transcript_filters")


class RowSink(Protocol):
    """Where a shard's kept rows, drops and rejects go (a stage writer or a shard part writer)."""

    def keep(self, row: Mapping[str, Any]) -> None: ...
    def drop(self, prov: Mapping[str, Any], reason: str, detail: str = "") -> None: ...
    def reject(self, prov: Mapping[str, Any], reason: str, detail: str = "") -> None: ...


@dataclass
class TranscribedShard:
    """What the transcription pass of one shard tells the driver (small: no rows, no audio)."""

    uri: str  # its stored clip outcomes
    key: str
    counts: StageCounts  # before dedup
    stats: AudioStats
    reused: bool
    entries: IndexEntries  # of its redacted kept transcripts, in record order
    pii: Counter[str] = field(default_factory=Counter)
    redact_s: float = 0.0


def transcribe_shard(
    storage: Storage,
    uri: str,
    records: Sequence[Mapping[str, Any]],
    transcriber: Transcriber,
    settings: AudioStageSettings,
) -> TranscribedShard:
    """Pass 1 over one shard's audio records (raw_crawl rows in record order); outcomes stored at `uri`."""
    outcomes, stats, reused = shard_outcomes(storage, uri, records, transcriber, settings)
    counts = StageCounts(stage=ASSET)
    for o in outcomes:
        if o.outcome == "kept":
            counts.kept += 1
        else:
            (counts.dropped if o.outcome == "dropped" else counts.rejected)[o.reason] += 1
    started, pii = time.perf_counter(), Counter[str]()
    kept = []
    for o in in_record_order(outcomes, records):
        if o.row is not None:
            row, found = redact_row(o.row)
            kept.append(row)
            pii.update(found)
    key = outcomes_key(records, settings, transcriber.settings)
    entries = transcript_entries(kept)
    return TranscribedShard(uri, key, counts, stats, reused, entries, pii, time.perf_counter() - started)


def in_record_order(outcomes: Sequence[ClipOutcome], records: Sequence[Mapping[str, Any]]) -> list[ClipOutcome]:
    """Outcomes sorted into the order of `records` (ASR returns early outcomes first)."""
    pos = {r["record_id"]: i for i, r in enumerate(records)}
    return sorted(outcomes, key=lambda o: pos[o.prov["record_id"]])


@dataclass
class PublishedShard:
    """What the publish pass of one shard tells the driver."""

    counts: StageCounts
    kept_seconds: float
    preview: list[dict[str, Any]]


def publish_shard(
    storage: Storage,
    shard: TranscribedShard,
    records: Sequence[Mapping[str, Any]],
    verdicts: Mapping[str, Verdict],
    out: RowSink,
    preview_rows: int = 5,
) -> PublishedShard:
    """Pass 2 over one shard: its stored outcomes, redacted and decided, as kept rows and rejects in record order."""
    stored = load_outcomes(storage, shard.uri, shard.key, records)
    if stored is None:
        raise RuntimeError(f"clip outcomes {shard.uri} changed since this run transcribed them: re-materialize")
    result = PublishedShard(StageCounts(stage=ASSET), 0.0, [])
    for o in in_record_order(stored[0], records):
        if o.row is None:
            (out.drop if o.outcome == "dropped" else out.reject)(o.prov, o.reason, o.detail)
            (result.counts.dropped if o.outcome == "dropped" else result.counts.rejected)[o.reason] += 1
            continue
        row, _ = redact_row(o.row)
        verdict = verdicts[row["record_id"]]
        if verdict.reason:
            out.drop(o.prov, verdict.reason, verdict.detail(row.get("url")))
            result.counts.dropped[verdict.reason] += 1
            continue
        kept = {**row, "dedup_cluster": verdict.cluster}
        out.keep(kept)
        result.counts.kept += 1
        result.kept_seconds += kept["duration_s"]
        if len(result.preview) < preview_rows:
            result.preview.append(kept)
    return result


@dataclass
class AudioStageResult:
    """The published drop: its output, audio totals, PII and dedup figures, and whether ASR was reused."""

    output: StageOutput
    stats: AudioStats
    kept_seconds: float
    pii: Counter[str]
    duplicates: Counter[str]
    reused: bool
    shards: int


def run_audio_stage(
    storage: Storage,
    drop: str,
    spans: Sequence[Sequence[Mapping[str, Any]]],
    transcriber: Transcriber,
    settings: AudioStageSettings,
) -> AudioStageResult:
    """Transcribe, deduplicate and publish a drop whose audio records are cut into `spans` (shards)."""
    passes = [
        transcribe_shard(storage, outcomes_uri(storage, drop, i, ASSET), span, transcriber, settings)
        for i, span in enumerate(spans)
    ]
    decided = dedup_verdicts(IndexEntries.concat([p.entries for p in passes]), storage, drop, ASSET)
    stats, pii, kept_s = AudioStats(), Counter[str](), 0.0
    schema = SCHEMA.with_metadata(decided.schema_metadata())
    with StageWriter(storage, ASSET, drop, schema) as out:
        for shard, span in zip(passes, spans, strict=True):
            published = publish_shard(storage, shard, span, decided.verdicts, out)
            kept_s += published.kept_seconds
            stats.merge(shard.stats)
            pii.update(shard.pii)
        output = out.close()
    return AudioStageResult(
        output, stats, kept_s, pii, decided.duplicates, bool(passes) and all(p.reused for p in passes), len(spans)
    )
