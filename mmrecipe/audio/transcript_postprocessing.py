"""Kept transcripts after the text stage's library: PII redacted, then exact and near-duplicates across drops dropped.

Redaction uses `mmrecipe.text.pii.redact` on the transcript and on every segment text, per row (a
shard pass); the `no_pii_left` check re-scans both with the independent `mmrecipe.text.pii_audit.audit`.
Dedup is drop-level and sees only the shards' index entries, never the rows: it uses the same
persistent, bucketed MinHash band index as the text stage (`mmrecipe.dedup.BandIndex`), kept beside
this stage's tables (`<lake>/transcribed_audio/side/<drop>/dedup_index/`): a drop writes only its own
entries, and `decide` keeps the earliest copy (by drop key, then record order) of every cluster, so the
survivors do not depend on the order drops are materialized in.
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


@dataclass
class DropVerdicts:
    """Every kept transcript's verdict by record id, duplicate counts and the index versions read."""

    verdicts: dict[str, Verdict]
    duplicates: Counter[str] = field(default_factory=Counter)
    sources: dict[str, str] = field(default_factory=dict)
    index_bytes_read: int = 0  # Parquet bytes of the dedup index the decisions read

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


def transcript_entries(rows: Sequence[Mapping[str, Any]]) -> IndexEntries:
    """The dedup index entries of redacted kept rows, in their order."""
    if not rows:
        return IndexEntries.concat([])
    return IndexEntries.from_texts([r["record_id"] for r in rows], [r["transcript"] for r in rows])


def dedup_verdicts(
    entries: IndexEntries,
    storage: Storage,
    drop: str,
    asset: str = "transcribed_audio",
    buckets: int = DEFAULT_BUCKETS,
) -> DropVerdicts:
    """Index the drop's transcripts (entries in record order) and decide keep / exact / near-duplicate."""
    index = BandIndex(storage, asset, buckets=buckets)
    index.write(drop, entries)
    decisions = index.decide(drop)
    if decisions.record_ids != entries.record_ids:
        raise ValueError(f"dedup index of {asset}/{drop} does not match the entries just written: re-materialize")
    result = DropVerdicts({}, Counter(), decisions.sources, decisions.index_bytes_read)
    for i, record_id in enumerate(decisions.record_ids):
        if decisions.keep[i]:
            result.verdicts[record_id] = Verdict(decisions.cluster[i])
            continue
        reason = decisions.reason[i] or "duplicate"
        result.duplicates[reason] += 1
        result.verdicts[record_id] = Verdict(
            decisions.cluster[i], reason, decisions.cluster_partition[i], decisions.duplicate_of[i]
        )
    return result


def pii_left(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(record_id, kind, value) of every PII value the independent audit finds in transcripts or segments."""
    found = []
    for row in rows:
        texts = [row["transcript"], *(seg["text"] for seg in row["segments"] or [])]
        found += [(row["record_id"], hit.kind, hit.value) for text in texts for hit in audit(text)]
    return found
