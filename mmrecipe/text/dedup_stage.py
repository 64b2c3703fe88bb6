"""Extracted text of a drop: its filtered documents minus the duplicates of earlier documents.

Reads the drop's committed `filtered_text` parts and its dedup decisions (see `mmrecipe.dedup.band_index`),
writes the survivors with their `dedup_cluster`, and carries `filtered_text`'s drops and rejects over, so
the output accounts for every HTML record of the drop. It runs on shards, one per filtered_text part: the
decisions are in the index's order, which is the order of the kept rows over the parts, so shard i takes
the slice of decisions at its part's row offset. The index versions the decision read are stored in the
output's Parquet metadata (`mmrecipe.dedup_sources`); `stale_drops` compares them with the index now and
names the drops that must be re-materialized.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mmrecipe.dedup import BandIndex, DedupDecisions
from mmrecipe.engine import (
    Engine,
    Shard,
    ShardOutput,
    ShardStage,
    StageRun,
    fingerprint,
    part_shards,
    read_shard,
    run_stage,
)
from mmrecipe.stage_output import REJECTS, commit_version, committed_parts
from mmrecipe.storage import Storage
from mmrecipe.text.pipeline import EXTRACTED_TEXT_SCHEMA, FILTERED, WRITE_BATCH_ROWS, release_free_memory

EXTRACTED = "extracted_text"


def extracted_schema(decisions: DedupDecisions) -> pa.Schema:
    """The output schema, carrying the index versions its decisions were made from."""
    return EXTRACTED_TEXT_SCHEMA.with_metadata(decisions.sources_metadata())


@dataclass(frozen=True)
class DedupTask:
    """What every shard of extracted_text[drop] needs: the decisions, each part's row offset, the rejects parts."""

    lake: Storage
    decisions: DedupDecisions
    offsets: tuple[int, ...]  # the first decision of each filtered_text part
    rejects: tuple[str, ...]  # filtered_text's rejects part of each shard


def _record_order(removal: tuple[dict[str, Any], str, str, str]) -> tuple[str, int]:
    return removal[0]["warc_path"], removal[0]["warc_offset"]


def _rejects_part(task: DedupTask, index: int) -> list[dict[str, Any]]:
    """The rows of filtered_text's rejects part `index`."""
    return task.lake.read_table(task.rejects[index]).to_pylist()


def dedup_shard(task: DedupTask, shard: Shard, out: ShardOutput) -> dict[str, Any]:
    """One filtered_text part's kept documents (with their cluster) or duplicate drops, and its carried rejects."""
    d = task.decisions
    first = task.offsets[shard.index] + shard.start
    rows = read_shard(task.lake, shard).to_pylist()
    removed: list[tuple[dict[str, Any], str, str, str]] = []  # (row, outcome, reason, detail), in record order
    for i, row in enumerate(rows, start=first):
        if i >= len(d.record_ids) or d.record_ids[i] != row["record_id"]:
            raise ValueError(
                f"{FILTERED}[{shard.drop}] part {shard.index} row {row['record_id']} is not the dedup index's "
                f"candidate {i}: the index and the parts disagree; re-materialize {FILTERED} for {shard.drop!r}"
            )
        if d.keep[i]:
            out.keep(row | {"dedup_cluster": d.cluster[i]})
            continue
        detail = {"cluster": d.cluster[i], "kept_copy_drop": d.cluster_partition[i],
                  "duplicate_of": d.duplicate_of[i], "url": row["url"]}  # fmt: skip
        removed.append((row, "dropped", d.reason[i] or "duplicate", json.dumps(detail, sort_keys=True)))
    carried = []
    if shard.start == 0:  # the shard's part of filtered_text's rejects goes with its first rows
        carried = [(r, r["outcome"], r["reason"], r["detail"] or "") for r in _rejects_part(task, shard.index)]
    # rejects in record order, so that the table does not depend on how the drop was cut into shards
    for row, outcome, reason, detail in heapq.merge(removed, carried, key=_record_order):
        (out.drop if outcome == "dropped" else out.reject)(row, reason, detail)
    release_free_memory()
    return {"candidates": len(rows)}


def dedup_drop(
    engine: Engine, lake: Storage, drop: str, decisions: DedupDecisions, code_version: str = "1"
) -> StageRun:
    """The driver of extracted_text[drop]: the decisions applied to every filtered_text part on `engine`."""
    shards = part_shards(lake, FILTERED, drop)
    offsets = tuple(sum(s.rows for s in shards[:i]) for i in range(len(shards)))
    if sum(s.rows for s in shards) != len(decisions.record_ids):
        raise ValueError(
            f"{FILTERED}[{drop}] has {sum(s.rows for s in shards)} kept rows but its dedup index "
            f"{len(decisions.record_ids)} candidates: re-materialize {FILTERED} for {drop!r}"
        )
    task = DedupTask(lake, decisions, offsets, tuple(committed_parts(lake, FILTERED, drop, REJECTS)))
    key = fingerprint(EXTRACTED, code_version, commit_version(lake, FILTERED, drop), decisions.sources)
    stage = ShardStage(EXTRACTED, drop, lake, extracted_schema(decisions), dedup_shard, task, key, WRITE_BATCH_ROWS)
    return run_stage(engine, stage, shards)


def stale_drops(index: BandIndex) -> dict[str, str]:
    """Drops whose extracted_text was decided against index versions of earlier drops that changed since."""
    return index.stale_outputs(EXTRACTED)
