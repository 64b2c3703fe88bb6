"""Kept transcripts after the text stage's library: PII redacted, then exact and near-duplicates across drops dropped.

Redaction uses `mmrecipe.text.pii.redact` on the transcript and on every segment text, per row (a
shard pass); the `no_pii_left` check re-scans both with the independent `mmrecipe.text.pii_audit.audit`.
Dedup is drop-level and sees only the shards' staged index entries (`write_entries`), never the rows: it
uses the same persistent, bucketed MinHash band index as the text stage (`mmrecipe.dedup.BandIndex`), kept
beside this stage's tables (`<lake>/transcribed_audio/side/<drop>/dedup_index/`): a drop writes only its
own entries, and `decide_parts` keeps the earliest copy (by drop key, then record order) of every cluster,
so the survivors do not depend on the order drops are materialized in. Its decisions are written per shard
from the duplicate edges, and each shard's publish task reads its own (`verdicts_of`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mmrecipe.dedup import BandIndex, IndexEntries
from mmrecipe.dedup.band_index import DEFAULT_BUCKETS, DecisionParts
from mmrecipe.dedup.bucket_file import TaskMap, thread_map, write_bucketed_to
from mmrecipe.storage import Storage
from mmrecipe.text.pii import redact
from mmrecipe.text.pii_audit import audit


@dataclass(frozen=True)
class Verdict:
    """The dedup fate of one kept transcript: its cluster, and for a duplicate the reason and the kept copy."""

    cluster: str
    reason: str | None = None  # exact_duplicate / near_duplicate; None: kept
    kept_copy_drop: str = ""
    duplicate_of: str | None = None

    def detail(self, url: str | None) -> str:
        """The rejects-table detail of a duplicate."""
        fields = {"cluster": self.cluster, "kept_copy_drop": self.kept_copy_drop, "duplicate_of": self.duplicate_of}
        return json.dumps({**fields, "url": url}, sort_keys=True)


def redact_row(row: Mapping[str, Any]) -> tuple[dict[str, Any], Counter[str]]:
    """The row with PII replaced by typed placeholders in its transcript and segment texts, and the counts."""
    counts: Counter[str] = Counter()
    transcript, found = redact(row["transcript"])
    counts.update({k: n for k, n in found.items() if n})
    segments = []
    for seg in row["segments"]:
        text, _ = redact(seg["text"])  # counted once, on the transcript
        segments.append({**seg, "text": text})
    return {**row, "transcript": transcript, "segments": segments}, counts


@dataclass(frozen=True)
class EntriesPart:
    """One shard's dedup index entries, staged: its records part, its bucketed keys part and its entry count."""

    records: str
    keys: str
    rows: int


def write_entries(
    storage: Storage, folder: str, name: str, rows: Sequence[Mapping[str, Any]], buckets: int
) -> EntriesPart:
    """Stage the dedup index entries of redacted kept rows (in their order) as one shard's parts under `folder`."""
    entries = (
        IndexEntries.from_texts([r["record_id"] for r in rows], [r["transcript"] for r in rows])
        if rows
        else IndexEntries.concat([])
    )
    part = EntriesPart(f"{folder}/{name}.records.parquet", f"{folder}/{name}.keys.parquet", len(entries))
    storage.write_table(part.records, entries.table())
    with storage.atomic_output(part.keys) as out:
        write_bucketed_to(out, entries.keys(), buckets, {})
    return part


def dedup_parts(
    storage: Storage,
    drop: str,
    parts: Sequence[EntriesPart],
    folder: str,
    asset: str = "transcribed_audio",
    buckets: int = DEFAULT_BUCKETS,
    map_tasks: TaskMap = thread_map,
) -> DecisionParts:
    """Index the drop's transcripts from its shards' entries parts, and write each shard's decisions under `folder`.

    Part i of the result holds the decisions of `parts[i]`'s entries (`band_index.DECISION_SCHEMA`), in order."""
    index = BandIndex(storage, asset, buckets=buckets, map_tasks=map_tasks)
    index.write_parts(drop, [p.records for p in parts], [p.keys for p in parts], [p.rows for p in parts])
    ends = np.cumsum([p.rows for p in parts], dtype=np.int64).tolist()
    return index.decide_parts(drop, list(zip([0, *ends[:-1]], ends, strict=True)), folder)


def verdicts_of(decisions: pa.Table) -> dict[str, Verdict]:
    """Each record's verdict, from a shard's decisions part."""
    return {
        r["record_id"]: Verdict(
            r["cluster"], r["reason"], r["cluster_partition"] if r["reason"] else "", r["duplicate_of"]
        )
        for r in decisions.to_pylist()
    }


def pii_left(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(record_id, kind, value) of every PII value the independent audit finds in transcripts or segments."""
    found = []
    for row in rows:
        texts = [row["transcript"], *(seg["text"] for seg in row["segments"] or [])]
        found += [(row["record_id"], hit.kind, hit.value) for text in texts for hit in audit(text)]
    return found
