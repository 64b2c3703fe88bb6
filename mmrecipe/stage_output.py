"""A stage's output for one partition: kept rows, a rejects table and the counts that tie them.

Every stage streams its records into a `StageWriter`. Kept rows go to `data.parquet`; dropped
(policy) and rejected (bad input) records go to `rejects.parquet` with a reason code, so that
`in = kept + dropped + rejected` can be checked from the files themselves.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mmrecipe.drops import validate_drop_name
from mmrecipe.storage import PARQUET_OPTIONS, Storage, retried, sweep_stale_temp_files

PROVENANCE_FIELDS: list[pa.Field] = [
    pa.field("record_id", pa.string(), nullable=False),
    pa.field("drop", pa.string(), nullable=False),
    pa.field("warc_path", pa.string(), nullable=False),
    pa.field("warc_offset", pa.int64(), nullable=False),
]
PROVENANCE_COLUMNS = [f.name for f in PROVENANCE_FIELDS]

REJECTS_SCHEMA = pa.schema(
    [
        *PROVENANCE_FIELDS,
        pa.field("warc_length", pa.int64()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),  # "dropped" (policy) or "rejected" (bad input)
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]
)
DATA_FILE = "data.parquet"
REJECTS_FILE = "rejects.parquet"


def stage_prefix(asset: str, partition: str) -> str:
    """The lake-relative folder of one asset partition: `<asset>/<partition>`; unsafe keys are refused."""
    return f"{asset}/{validate_drop_name(partition)}"


@dataclass
class StageCounts:
    """How many records a stage saw, kept, dropped and rejected, by reason."""

    stage: str
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.kept + sum(self.dropped.values()) + sum(self.rejected.values())

    def as_metadata(self) -> dict[str, int]:
        """Counts as plain ints: total, kept, dropped, rejected and one key per reason."""
        meta = {
            "total": int(self.total),
            "kept": int(self.kept),
            "dropped": int(sum(self.dropped.values())),
            "rejected": int(sum(self.rejected.values())),
        }
        meta |= {f"dropped_{r}": int(n) for r, n in sorted(self.dropped.items())}
        meta |= {f"rejected_{r}": int(n) for r, n in sorted(self.rejected.items())}
        return meta


class _ParquetSink:
    """Batched Parquet writing to a local temp file, published atomically on close."""

    def __init__(self, storage: Storage, uri: str, schema: pa.Schema, batch_rows: int) -> None:
        self.storage, self.uri, self.schema, self.batch_rows = storage, uri, schema, batch_rows
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        self._tmp = os.path.join(_tmp_dir(storage), f"mmrecipe-{uuid.uuid4().hex}.parquet")
        self._writer = pq.ParquetWriter(self._tmp, schema, **PARQUET_OPTIONS)

    def add(self, row: Mapping[str, Any]) -> None:
        self.rows.append(dict(row))
        self.count += 1
        if len(self.rows) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self._writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def publish(self) -> None:
        self.flush()
        self._writer.close()
        try:
            retried(lambda: self.storage.copy_file_in(self._tmp, self.uri))
        finally:
            os.unlink(self._tmp)

    def abort(self) -> None:
        self._writer.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)


def _tmp_dir(storage: Storage) -> str:
    """The local scratch folder of Parquet being written (killed runs' leftovers there expire after a day)."""
    path = storage.scratch_dir()
    sweep_stale_temp_files(path, "mmrecipe-")
    return path


@dataclass
class StageOutput:
    """Where a finished stage partition was published, and its counts."""

    data_uri: str
    rejects_uri: str
    counts: StageCounts
    preview: list[dict[str, Any]]


class StageWriter:
    """Streams one stage partition's kept rows and rejects to Parquet in the lake."""

    def __init__(
        self,
        storage: Storage,
        asset: str,
        partition: str,
        schema: pa.Schema,
        batch_rows: int = 2048,
        preview_rows: int = 5,
    ) -> None:
        missing = [c for c in PROVENANCE_COLUMNS if c not in schema.names]
        if missing:
            raise ValueError(f"stage schema for {asset} lacks provenance columns {missing}")
        self.stage = asset
        prefix = stage_prefix(asset, partition)
        self.data = _ParquetSink(storage, storage.uri(prefix, DATA_FILE), schema, batch_rows)
        self.rejects = _ParquetSink(storage, storage.uri(prefix, REJECTS_FILE), REJECTS_SCHEMA, batch_rows)
        self.counts = StageCounts(stage=asset)
        self.preview: list[dict[str, Any]] = []
        self.preview_rows = preview_rows

    def keep(self, row: Mapping[str, Any]) -> None:
        """Write one kept row."""
        self.data.add(row)
        self.counts.kept += 1
        if len(self.preview) < self.preview_rows:
            self.preview.append(dict(row))

    def drop(self, prov: Mapping[str, Any], reason: str, detail: str = "") -> None:
        """Record a record removed by a policy filter (quality, dedup, opt-out...)."""
        self._reject(prov, "dropped", reason, detail)
        self.counts.dropped[reason] += 1

    def reject(self, prov: Mapping[str, Any], reason: str, detail: str = "") -> None:
        """Record a record that could not be processed (corrupt, unparseable, too large...)."""
        self._reject(prov, "rejected", reason, detail)
        self.counts.rejected[reason] += 1

    def _reject(self, prov: Mapping[str, Any], outcome: str, reason: str, detail: str) -> None:
        row = {c: prov[c] for c in PROVENANCE_COLUMNS}
        row |= {
            "warc_length": prov.get("warc_length"),
            "stage": self.stage,
            "outcome": outcome,
            "reason": reason,
            "detail": detail[:2000],
        }
        self.rejects.add(row)

    def close(self) -> StageOutput:
        """Publish both tables atomically and return where they are."""
        self.rejects.publish()
        self.data.publish()
        return StageOutput(self.data.uri, self.rejects.uri, self.counts, self.preview)

    def abort(self) -> None:
        """Discard everything written so far; nothing is published."""
        self.data.abort()
        self.rejects.abort()

    def __enter__(self) -> StageWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: list[str], max_chars: int = 80) -> str:
    """A markdown table of `rows` restricted to `columns`, cells truncated to `max_chars`."""

    def cell(v: Any) -> str:
        s = "" if v is None else str(v)
        s = s.replace("\n", " ").replace("|", "\\|")
        return s if len(s) <= max_chars else s[: max_chars - 1] + "…"

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def count_rows(storage: Storage, uri: str) -> int:
    """Number of rows in the Parquet file at `uri` (from its footer)."""
    with storage.open_input(uri) as f:
        return int(pq.ParquetFile(f).metadata.num_rows)
