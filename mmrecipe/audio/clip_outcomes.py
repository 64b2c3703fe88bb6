"""Clip outcomes of a shard: what decoding, speech detection, ASR and the transcript filters decided per audio record.

transcribed_audio's shard pass stores them beside its tables, one file per shard
(`<lake>/transcribed_audio/side/<drop>/clip_outcomes/<span>.parquet`), before post-processing
(PII redaction, cross-drop dedup), under a key digesting everything they depend on: the
shard's audio records with their payload digests, the stage settings, the
transcriber settings and the model's files (names and sizes). A run whose key matches (a dedup
refresh after an earlier drop arrived late, a retry after a failed check) reuses them instead of
transcribing again; any change to the key transcribes again. Only deterministic figures are
stored, so the file is byte-identical for the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mmrecipe.audio.transcribed_audio import SCHEMA, AudioStageSettings, AudioStats, ClipOutcome, transcribe_records
from mmrecipe.audio.transcription import Transcriber, TranscriberSettings
from mmrecipe.stage_output import PROVENANCE_COLUMNS, SIDE, stage_prefix
from mmrecipe.storage import Storage
from mmrecipe.warc_index import RecordReader

OUTCOMES_DIR = "clip_outcomes"
FORMAT_VERSION = "1"
KEY_META = b"mmrecipe.clip_outcomes_key"
STATS_META = b"mmrecipe.clip_outcomes_stats"
OUTCOMES_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("row", pa.struct(list(SCHEMA))),
    ]
)
_SPEED_ONLY = ("cpu_threads", "num_workers")  # transcriber settings that change speed, not transcripts


def model_files(model_dir: str) -> list[tuple[str, int]]:
    """(relative path, size) of every file of a model directory, sorted; empty if it is not a directory."""
    found = []
    for folder, _, names in os.walk(model_dir):
        for name in names:
            path = os.path.join(folder, name)
            found.append((os.path.relpath(path, model_dir), os.path.getsize(path)))
    return sorted(found)


def outcomes_key(
    records: Sequence[Mapping[str, Any]], settings: AudioStageSettings, transcriber: TranscriberSettings
) -> str:
    """The digest of everything a drop's clip outcomes depend on."""
    asr = {k: v for k, v in asdict(transcriber).items() if k not in _SPEED_ONLY}
    basis = {
        "format": FORMAT_VERSION,
        "records": [dict(r) for r in records],
        "settings": asdict(settings),
        "transcriber": asr,
        "model_files": model_files(transcriber.model_dir),
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()


def save_outcomes(storage: Storage, uri: str, key: str, outcomes: Sequence[ClipOutcome], stats: AudioStats) -> None:
    """Store a drop's clip outcomes (in order) and their audio totals under `key`, atomically."""
    totals = {"in_seconds": stats.in_seconds, "kept_seconds": stats.kept_seconds, "durations": dict(stats.durations)}
    rows = [
        {"record_id": o.prov["record_id"], "outcome": o.outcome, "reason": o.reason, "detail": o.detail, "row": o.row}
        for o in outcomes
    ]
    schema = OUTCOMES_SCHEMA.with_metadata({KEY_META: key.encode(), STATS_META: json.dumps(totals).encode()})
    storage.write_table(uri, pa.Table.from_pylist(rows, schema=schema))


def load_outcomes(
    storage: Storage, uri: str, key: str, records: Sequence[Mapping[str, Any]]
) -> tuple[list[ClipOutcome], AudioStats] | None:
    """The stored outcomes and audio totals, if they were stored under `key` for exactly these records."""
    if not storage.exists(uri):
        return None
    try:
        with storage.open_input(uri) as f:
            meta = pq.read_schema(f).metadata or {}
        if meta.get(KEY_META, b"").decode() != key:
            return None
        table = storage.read_table(uri)
    except (OSError, pa.ArrowInvalid):  # unreadable: transcribe again (the next save replaces it)
        return None
    provs = {r["record_id"]: {c: r[c] for c in [*PROVENANCE_COLUMNS, "warc_length"]} for r in records}
    stored = table.to_pylist()
    if sorted(o["record_id"] for o in stored) != sorted(provs):
        return None
    outcomes = [ClipOutcome(provs[o["record_id"]], o["outcome"], o["reason"], o["detail"], o["row"]) for o in stored]
    totals = json.loads(meta[STATS_META])
    stats = AudioStats(in_seconds=totals["in_seconds"], kept_seconds=totals["kept_seconds"])
    stats.durations = Counter(totals["durations"])
    return outcomes, stats


def outcomes_folder(storage: Storage, drop: str, asset: str = "transcribed_audio") -> str:
    """The folder of a drop's stored clip outcomes, one file per shard."""
    return storage.uri(stage_prefix(asset, drop, SIDE), OUTCOMES_DIR)


def outcomes_uri(storage: Storage, drop: str, span: str, asset: str = "transcribed_audio") -> str:
    """Where the clip outcomes of one shard (named by its span) of a drop are stored."""
    return f"{outcomes_folder(storage, drop, asset)}/{span}.parquet"


def shard_outcomes(
    storage: Storage,
    uri: str,
    records: Sequence[Mapping[str, Any]],
    transcriber: Transcriber,
    settings: AudioStageSettings,
) -> tuple[list[ClipOutcome], AudioStats, bool]:
    """A shard's clip outcomes, its audio totals and whether they were reused (else transcribed now and stored)."""
    key = outcomes_key(records, settings, transcriber.settings)
    stored = load_outcomes(storage, uri, key, records)
    if stored is not None:
        return *stored, True
    stats = AudioStats()
    with RecordReader(storage) as reader:
        outcomes = list(transcribe_records(reader, records, transcriber, settings, stats))
    save_outcomes(storage, uri, key, outcomes, stats)
    return outcomes, stats, False
