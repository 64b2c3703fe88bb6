"""Extracted text of a drop: its filtered documents minus the duplicates of earlier documents.

Reads the drop's `filtered_text` partition and its dedup decisions (see `mmrecipe.dedup.band_index`),
writes the survivors with their `dedup_cluster`, and carries `filtered_text`'s drops and rejects
over, so the output accounts for every HTML record of the drop. The index versions the decision
read are stored in the output's Parquet metadata (`mmrecipe.dedup_sources`); `stale_drops`
compares them with the index now and names the drops that must be re-materialized.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mmrecipe.dedup import BandIndex, DedupDecisions
from mmrecipe.stage_output import StageWriter, stage_tables_uri
from mmrecipe.storage import Storage
from mmrecipe.text.pipeline import EXTRACTED_TEXT_SCHEMA, release_free_memory

FILTERED = "filtered_text"
EXTRACTED = "extracted_text"


def extracted_schema(decisions: DedupDecisions) -> pa.Schema:
    """The output schema, carrying the index versions its decisions were made from."""
    return EXTRACTED_TEXT_SCHEMA.with_metadata(decisions.sources_metadata())


def read_rows(
    storage: Storage, uri: str, columns: list[str] | None = None, batch_rows: int = 256
) -> Iterator[dict[str, Any]]:
    """The rows of a Parquet file as dicts, streamed batch by batch."""
    with storage.open_input(uri) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=columns):
            yield from batch.to_pylist()
            release_free_memory()


def dedup_drop(lake: Storage, drop: str, writer: StageWriter, decisions: DedupDecisions) -> None:
    """Write the drop's kept documents (with their cluster) and every drop/reject of the drop to `writer`."""
    data_uri, rejects_uri = stage_tables_uri(lake, FILTERED, drop)
    verdicts = {rid: i for i, rid in enumerate(decisions.record_ids)}
    for row in read_rows(lake, data_uri):
        i = verdicts.pop(row["record_id"], None)
        if i is None:
            raise ValueError(f"{data_uri} has record {row['record_id']} that its dedup index lacks: re-materialize")
        if decisions.keep[i]:
            writer.keep(row | {"dedup_cluster": decisions.cluster[i]})
            continue
        detail = {
            "cluster": decisions.cluster[i],
            "kept_copy_drop": decisions.cluster_partition[i],
            "duplicate_of": decisions.duplicate_of[i],
            "url": row["url"],
        }
        writer.drop(row, decisions.reason[i] or "duplicate", json.dumps(detail, sort_keys=True))
    if verdicts:
        raise ValueError(
            f"the dedup index of {drop} has {len(verdicts)} records missing from {data_uri}: re-materialize"
        )
    for row in read_rows(lake, rejects_uri):
        (writer.drop if row["outcome"] == "dropped" else writer.reject)(row, row["reason"], row["detail"] or "")


def stale_drops(index: BandIndex) -> dict[str, str]:
    """Drops whose extracted_text was decided against index versions of earlier drops that changed since."""
    return index.stale_outputs(EXTRACTED)
