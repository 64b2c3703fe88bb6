"""The two shard passes of transcribed_audio on an engine, and the drop-level dedup between them.

The driver (`run_audio_stage`) plans shards of the drop's audio records and runs:

1. `transcribe_pass` on every shard (the GPU pass: its Ray tasks ask for the stage's `num_gpus`):
   decode -> speech detection -> ASR -> transcript filters per record, or the stored clip outcomes
   of the same records, settings and model (`clip_outcomes`, kept per shard beside the tables, so a
   dedup refresh transcribes nothing); then PII redaction of the kept transcripts, and their MinHash
   index entries staged as parts. It returns counts, audio totals, step stats and part names: never rows.
2. `transcript_postprocessing.dedup_parts` (drop level): the drop's index from the shards' parts, and
   each shard's decisions, written in bucket and span tasks on the engine: the driver holds duplicate
   edges at most.
3. `publish_pass` on every shard through `run_stage`: stored outcomes plus verdicts become kept rows
   and rejects, both in record order, published with one commit.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mmrecipe.audio.clip_outcomes import (
    load_outcomes,
    outcomes_folder,
    outcomes_key,
    outcomes_uri,
    save_outcomes,
    shard_outcomes,
)
from mmrecipe.audio.transcribed_audio import INPUT_COLUMNS, SCHEMA, AudioStageSettings, AudioStats, ClipOutcome
from mmrecipe.audio.transcript_postprocessing import (
    EntriesPart,
    dedup_parts,
    redact_row,
    verdicts_of,
    write_entries,
)
from mmrecipe.audio.transcription import Transcriber, TranscriberSettings
from mmrecipe.dedup.band_index import DEFAULT_BUCKETS, EXACT_DUPLICATE, NEAR_DUPLICATE
from mmrecipe.engine import (
    WORKER_CRASHED,
    Engine,
    Shard,
    ShardOutput,
    ShardStage,
    StageRun,
    StepStats,
    fingerprint,
    plan_shards,
    read_shard,
    run_stage,
    worker_cached,
)
from mmrecipe.stage_output import PROVENANCE_COLUMNS, STAGING, stage_prefix
from mmrecipe.storage import Storage

ASSET = "transcribed_audio"
CODE_VERSION = "2"  # 2: shard passes
STEPS = ("read", "decode", "speech_detection", "asr", "transcript_filters", "pii_redaction", "dedup")
_STEP_OF_REASON = {
    "unreadable_record": "read",
    "http_error": "read",
    WORKER_CRASHED: "read",
    "too_little_speech": "speech_detection",
}  # every other reject is the decoder's, every other drop the transcript filters'


@dataclass(frozen=True)
class AudioPass:
    """What every shard of one run needs (picklable): the lake, the drop and the settings."""

    lake: Storage
    drop: str
    settings: AudioStageSettings
    transcriber: TranscriberSettings
    buckets: int = DEFAULT_BUCKETS  # of the dedup index: a shard's keys part is bucketed the same


def entries_folder(lake: Storage, drop: str) -> str:
    """Where the shards of a run stage their dedup index entries."""
    return lake.uri(stage_prefix(ASSET, drop, STAGING), "dedup_entries")


@dataclass
class TranscribedShard:
    """What the transcription pass of one shard tells the driver (small: no rows, no audio)."""

    shard: Shard
    uri: str  # its stored clip outcomes
    key: str
    stats: AudioStats
    steps: dict[str, StepStats]
    reused: bool
    entries: EntriesPart  # the index entries of its redacted kept transcripts, in record order
    pii: Counter[str] = field(default_factory=Counter)
    load_s: float = 0.0


def _step_stats(outcomes: Sequence[ClipOutcome], stats: AudioStats, redact_s: float) -> dict[str, StepStats]:
    """Per-step items seen, seconds and drop/reject counts of one shard (ASR streams clips, so counted after)."""
    steps = {name: StepStats() for name in STEPS[:-1]}
    for o in outcomes:
        if o.outcome != "kept":
            step = _STEP_OF_REASON.get(o.reason, "decode" if o.outcome == "rejected" else "transcript_filters")
            (steps[step].dropped if o.outcome == "dropped" else steps[step].rejected)[o.reason] += 1
    alive = len(outcomes)
    for name in STEPS[:-1]:
        steps[name].seen = alive
        alive -= sum(steps[name].dropped.values()) + sum(steps[name].rejected.values())
    steps["decode"].seconds, steps["speech_detection"].seconds = stats.decode_s, stats.vad_s
    steps["asr"].seconds, steps["pii_redaction"].seconds = stats.asr_s, redact_s
    return steps


def in_record_order(outcomes: Sequence[ClipOutcome], records: Sequence[Mapping[str, Any]]) -> list[ClipOutcome]:
    """Outcomes sorted into the order of `records` (ASR returns early outcomes first)."""
    pos = {r["record_id"]: i for i, r in enumerate(records)}
    return sorted(outcomes, key=lambda o: pos[o.prov["record_id"]])


def transcribe_pass(job: AudioPass, shard: Shard) -> TranscribedShard:
    """Pass 1 over one shard: clip outcomes (stored, or reused), redaction, index entries."""
    records = read_shard(job.lake, shard, INPUT_COLUMNS).to_pylist()
    transcriber = worker_cached(("transcriber", job.transcriber), lambda: Transcriber(job.transcriber))
    load_before = transcriber.load_s
    uri = outcomes_uri(job.lake, job.drop, shard.span, ASSET)
    outcomes, stats, reused = shard_outcomes(job.lake, uri, records, transcriber, job.settings)
    started, pii, kept = time.perf_counter(), Counter[str](), []
    for o in in_record_order(outcomes, records):
        if o.row is not None:
            row, found = redact_row(o.row)
            kept.append(row)
            pii.update(found)
    steps = _step_stats(outcomes, stats, time.perf_counter() - started)
    key = outcomes_key(records, job.settings, job.transcriber)
    load_s = transcriber.load_s - load_before
    entries = write_entries(job.lake, entries_folder(job.lake, job.drop), shard.span, kept, job.buckets)
    return TranscribedShard(shard, uri, key, stats, steps, reused, entries, pii, load_s)


def transcribe_crashed(job: AudioPass, shard: Shard, error: str) -> TranscribedShard:
    """The pass-1 result of a single record that kills its worker: stored as a `worker_crashed` reject."""
    records = read_shard(job.lake, shard, INPUT_COLUMNS).to_pylist()
    provs = [{c: r[c] for c in [*PROVENANCE_COLUMNS, "warc_length"]} for r in records]
    outcomes = [ClipOutcome(p, "rejected", WORKER_CRASHED, error) for p in provs]
    uri, key = outcomes_uri(job.lake, job.drop, shard.span, ASSET), f"crashed:{error}"  # never reused
    save_outcomes(job.lake, uri, key, outcomes, AudioStats())
    steps = _step_stats(outcomes, AudioStats(), 0.0)
    entries = write_entries(job.lake, entries_folder(job.lake, job.drop), shard.span, [], job.buckets)
    return TranscribedShard(shard, uri, key, AudioStats(), steps, False, entries)


@dataclass(frozen=True)
class PublishShard(Shard):
    """A shard of the publish pass: where its clip outcomes and its dedup verdicts are staged."""

    outcomes: str = ""
    key: str = ""
    verdicts: str = ""


def publish_pass(lake: Storage, shard: PublishShard, out: ShardOutput) -> Mapping[str, Any]:
    """Pass 2 over one shard: its stored outcomes, redacted and decided, as kept rows and rejects in record order."""
    records = read_shard(lake, shard, INPUT_COLUMNS).to_pylist()
    stored = load_outcomes(lake, shard.outcomes, shard.key, records)
    if stored is None:
        raise RuntimeError(f"clip outcomes {shard.outcomes} changed since this run transcribed them: re-materialize")
    verdicts = verdicts_of(lake.read_table(shard.verdicts))
    kept_s, started, dedup = 0.0, time.perf_counter(), StepStats(seen=len(verdicts))
    for o in in_record_order(stored[0], records):
        if o.row is None:
            (out.drop if o.outcome == "dropped" else out.reject)(o.prov, o.reason, o.detail)
            continue
        row, _ = redact_row(o.row)
        verdict = verdicts[row["record_id"]]
        if verdict.reason:
            out.drop(o.prov, verdict.reason, verdict.detail(row.get("url")))
            dedup.dropped[verdict.reason] += 1
            continue
        out.keep({**row, "dedup_cluster": verdict.cluster})
        kept_s += row["duration_s"]
    dedup.seconds = time.perf_counter() - started
    out.steps["dedup"] = dedup
    return {"kept_seconds": kept_s}


@dataclass
class AudioStageResult:
    """The published drop: its stage run, audio totals, PII and dedup figures, and whether ASR was reused."""

    run: StageRun
    stats: AudioStats
    kept_seconds: float
    pii: Counter[str]
    duplicates: Counter[str]
    reused: bool
    load_s: float
    index_bytes_read: int  # of the dedup index, to decide this drop against itself and the earlier drops


def run_audio_stage(
    engine: Engine,
    lake: Storage,
    drop: str,
    settings: AudioStageSettings,
    transcriber: TranscriberSettings,
    shard_bytes: int,
    asr_engine: Engine | None = None,
    buckets: int = DEFAULT_BUCKETS,
) -> AudioStageResult:
    """Transcribe, deduplicate and publish a drop's audio records on `engine`, in shards of about `shard_bytes`.

    The ASR pass runs on `asr_engine` if given: the same engine with the stage's GPU share per Ray task."""
    job = AudioPass(lake, drop, settings, transcriber, buckets)
    shards = plan_shards(lake, drop, "audio", shard_bytes)
    ran = (asr_engine or engine).run(partial(transcribe_pass, job), shards, partial(transcribe_crashed, job))
    passes = [r for rs in ran for r in rs]
    staging = lake.uri(stage_prefix(ASSET, drop, STAGING), "verdicts")
    try:
        decided = dedup_parts(lake, drop, [p.entries for p in passes], staging, ASSET, buckets, engine.map)
    finally:
        lake.delete_dir(entries_folder(lake, drop))
    publish = [
        PublishShard(**vars(p.shard), outcomes=p.uri, key=p.key, verdicts=part)
        for p, part in zip(passes, decided.parts, strict=True)
    ]
    version = fingerprint(ASSET, CODE_VERSION, [p.key for p in passes], decided.sources)
    schema = SCHEMA.with_metadata(decided.sources_metadata())
    run = run_stage(engine, ShardStage(ASSET, drop, lake, schema, publish_pass, lake, version), publish)
    current = {p.uri for p in passes}
    for uri in lake.list_files(outcomes_folder(lake, drop, ASSET)):
        if uri not in current:  # another shard plan's outcomes
            lake.delete(uri)
    stats, pii = AudioStats(), Counter[str]()
    for p in passes:
        stats.merge(p.stats)
        pii.update(p.pii)
    run.steps = StepStats.merged([*(p.steps for p in passes), run.steps])
    kept_s = sum(float(r.extra.get("kept_seconds", 0.0)) for r in run.results)
    reused = all(p.reused for p in passes) and bool(passes)
    load_s = sum(p.load_s for p in passes)
    duplicates = Counter({r: n for r in (EXACT_DUPLICATE, NEAR_DUPLICATE) if (n := decided.counts[r])})
    return AudioStageResult(run, stats, kept_s, pii, duplicates, reused, load_s, decided.index_bytes_read)
