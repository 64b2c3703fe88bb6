"""Extracted text of a drop: its filtered documents minus the duplicates of earlier documents.

Reads the drop's `filtered_text` partition and its dedup decisions (see `mmrecipe.dedup.band_index`),
writes the survivors with their `dedup_cluster`, and carries `filtered_text`'s drops and rejects
over, so the output accounts for every HTML record of the drop. The index versions the decision
read are stored in the output's Parquet metadata (`mmrecipe.dedup_sources`); `stale_drops`
compares them with the index now and names the drops that must be re-materialized.
"""

from __future__ import annotations

import json

import pyarrow as pa

from mmrecipe.dedup import BandIndex, DedupDecisions
from mmrecipe.stage_output import REJECTS, StageWriter, iter_stage_rows
from mmrecipe.storage import Storage
from mmrecipe.text.pipeline import EXTRACTED_TEXT_SCHEMA

FILTERED = "filtered_text"
EXTRACTED = "extracted_text"


def extracted_schema(decisions: DedupDecisions) -> pa.Schema:
    """The output schema, carrying the index versions its decisions were made from."""
    return EXTRACTED_TEXT_SCHEMA.with_metadata(decisions.sources_metadata())


def dedup_drop(lake: Storage, drop: str, writer: StageWriter, decisions: DedupDecisions) -> None:
    """Write the drop's kept documents (with their cluster) and every drop/reject of the drop to `writer`."""
    data_uri = f"{FILTERED}[{drop}]"
    verdicts = {rid: i for i, rid in enumerate(decisions.record_ids)}
    for row in iter_stage_rows(lake, FILTERED, drop):
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
    for row in iter_stage_rows(lake, FILTERED, drop, REJECTS):
        (writer.drop if row["outcome"] == "dropped" else writer.reject)(row, row["reason"], row["detail"] or "")


def stale_drops(index: BandIndex) -> dict[str, str]:
    """Drops whose extracted_text was decided against index versions of earlier drops that changed since."""
    return index.stale_outputs(EXTRACTED)
