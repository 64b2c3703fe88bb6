"""Kept transcripts after the text stage's library: PII redacted, then exact and near-duplicates across drops dropped.

Redaction uses `mmrecipe.text.pii.redact` on the transcript and on every segment text; the
`no_pii_left` check re-scans both with the independent `mmrecipe.text.pii_audit.audit`. Dedup uses
the same persistent, bucketed MinHash band index as the text stage (`mmrecipe.dedup.BandIndex`),
kept beside this stage's tables (`<lake>/transcribed_audio/side/<drop>/dedup_index/`): a drop
writes only its own entries, and `decide` keeps the earliest copy (by drop key, then record order)
of every cluster, so the survivors do not depend on the order drops are materialized in.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmrecipe.dedup import BandIndex, IndexEntries
from mmrecipe.dedup.band_index import DEFAULT_BUCKETS
from mmrecipe.storage import Storage
from mmrecipe.text.pii import redact
from mmrecipe.text.pii_audit import audit

SOURCES_KEY = b"mmrecipe.dedup_sources"


@dataclass
class PostprocessResult:
    """Each row's fate (row, drop reason or None, detail), PII counts, duplicate counts and index versions read."""

    outcomes: list[tuple[dict[str, Any], str | None, str]]
    pii: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    sources: dict[str, str] = field(default_factory=dict)

    def schema_metadata(self) -> dict[bytes, bytes]:
        """Parquet metadata recording which dedup index versions the decisions were made from."""
        return {SOURCES_KEY: json.dumps(self.sources, sort_keys=True).encode()}


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


def postprocess_transcripts(
    rows: Sequence[Mapping[str, Any]],
    storage: Storage,
    drop: str,
    asset: str = "transcribed_audio",
    buckets: int = DEFAULT_BUCKETS,
) -> PostprocessResult:
    """Redact every kept row, index the drop's transcripts, and decide keep / exact / near-duplicate."""
    redacted: list[dict[str, Any]] = []
    pii: Counter[str] = Counter()
    for row in rows:
        clean, counts = redact_row(row)
        redacted.append(clean)
        pii.update(counts)
    index = BandIndex(storage, asset, buckets=buckets)
    ids = [r["record_id"] for r in redacted]
    entries = IndexEntries.from_texts(ids, [r["transcript"] for r in redacted]) if redacted else IndexEntries.concat([])
    index.write(drop, entries)
    decisions = index.decide(drop)
    if decisions.record_ids != ids:
        raise ValueError(f"dedup index of {asset}/{drop} does not match the rows just written: re-materialize")
    result = PostprocessResult([], pii, Counter(), decisions.sources)
    for i, row in enumerate(redacted):
        if decisions.keep[i]:
            result.outcomes.append(({**row, "dedup_cluster": decisions.cluster[i]}, None, ""))
            continue
        reason = decisions.reason[i] or "duplicate"
        detail = {
            "cluster": decisions.cluster[i],
            "kept_copy_drop": decisions.cluster_partition[i],
            "duplicate_of": decisions.duplicate_of[i],
            "url": row.get("url"),
        }
        result.duplicates[reason] += 1
        result.outcomes.append((row, reason, json.dumps(detail, sort_keys=True)))
    return result


def pii_left(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(record_id, kind, value) of every PII value the independent audit finds in transcripts or segments."""
    found = []
    for row in rows:
        texts = [row["transcript"], *(seg["text"] for seg in row["segments"] or [])]
        found += [(row["record_id"], hit.kind, hit.value) for text in texts for hit in audit(text)]
    return found
