"""Extracted text of a drop: its filtered documents minus the duplicates of earlier documents.

Reads the drop's committed `filtered_text` parts and its dedup decisions (see `mmrecipe.dedup.band_index`),
writes the survivors with their `dedup_cluster`, and carries `filtered_text`'s drops and rejects over, so
the output accounts for every HTML record of the drop. It runs on shards, one per filtered_text part: the
index holds the kept rows in the order of the parts, so the decisions are written as one part per
filtered_text part (`BandIndex.decide_parts`, in engine tasks) and shard i reads only its own. The index
versions the decisions read are stored in the output's Parquet metadata (`mmrecipe.dedup_sources`);
`stale_drops` compares them with the index now and names the drops that must be re-materialized.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mmrecipe.dedup import BandIndex
from mmrecipe.dedup.band_index import DecisionParts
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
from mmrecipe.stage_output import REJECTS, STAGING, commit_version, committed_parts, stage_prefix
from mmrecipe.storage import Storage
from mmrecipe.text.pipeline import EXTRACTED_TEXT_SCHEMA, FILTERED, WRITE_BATCH_ROWS, release_free_memory

EXTRACTED = "extracted_text"


def extracted_schema(decisions: DecisionParts) -> pa.Schema:
    """The output schema, carrying the index versions its decisions were made from."""
    return EXTRACTED_TEXT_SCHEMA.with_metadata(decisions.sources_metadata())


@dataclass(frozen=True)
class DedupTask:
    """What every shard of extracted_text[drop] needs: the decisions part and the rejects part of each part."""

    lake: Storage
    decisions: tuple[str, ...]  # the decisions of each filtered_text part's rows (`band_index.DECISION_SCHEMA`)
    rejects: tuple[str, ...]  # filtered_text's rejects part of each shard


def _record_order(removal: tuple[dict[str, Any], str, str, str]) -> tuple[str, int]:
    return removal[0]["warc_path"], removal[0]["warc_offset"]


def _rejects_part(task: DedupTask, index: int) -> list[dict[str, Any]]:
    """The rows of filtered_text's rejects part `index`."""
    return task.lake.read_table(task.rejects[index]).to_pylist()


def dedup_shard(task: DedupTask, shard: Shard, out: ShardOutput) -> dict[str, Any]:
    """One filtered_text part's kept documents (with their cluster) or duplicate drops, and its carried rejects."""
    rows = read_shard(task.lake, shard).to_pylist()
    decisions = task.lake.read_table(task.decisions[shard.index]).slice(shard.start, len(rows)).to_pylist()
    removed: list[tuple[dict[str, Any], str, str, str]] = []  # (row, outcome, reason, detail), in record order
    for i, row in enumerate(rows):
        if i >= len(decisions) or (d := decisions[i])["record_id"] != row["record_id"]:
            raise ValueError(
                f"{FILTERED}[{shard.drop}] part {shard.index} row {row['record_id']} is not the dedup index's "
                f"candidate {shard.start + i} of that part: the index and the parts disagree; "
                f"re-materialize {FILTERED} for {shard.drop!r}"
            )
        if d["keep"]:
            out.keep(row | {"dedup_cluster": d["cluster"]})
            continue
        detail = {"cluster": d["cluster"], "kept_copy_drop": d["cluster_partition"],
                  "duplicate_of": d["duplicate_of"], "url": row["url"]}  # fmt: skip
        removed.append((row, "dropped", d["reason"] or "duplicate", json.dumps(detail, sort_keys=True)))
    carried = []
    if shard.start == 0:  # the shard's part of filtered_text's rejects goes with its first rows
        carried = [(r, r["outcome"], r["reason"], r["detail"] or "") for r in _rejects_part(task, shard.index)]
    # rejects in record order, so that the table does not depend on how the drop was cut into shards
    for row, outcome, reason, detail in heapq.merge(removed, carried, key=_record_order):
        (out.drop if outcome == "dropped" else out.reject)(row, reason, detail)
    release_free_memory()
    return {"candidates": len(rows)}


def dedup_drop(
    engine: Engine, lake: Storage, drop: str, index: BandIndex, code_version: str = "1"
) -> tuple[StageRun, DecisionParts]:
    """The driver of extracted_text[drop]: `index`'s decisions, written per filtered_text part (in `index`'s
    tasks: give it `map_tasks=engine.map`), applied to every part on `engine`."""
    shards = part_shards(lake, FILTERED, drop)
    if sum(s.rows for s in shards) != (candidates := index.entries(drop)):
        raise ValueError(
            f"{FILTERED}[{drop}] has {sum(s.rows for s in shards)} kept rows but its dedup index "
            f"{candidates} candidates: re-materialize {FILTERED} for {drop!r}"
        )
    ends = [sum(s.rows for s in shards[: i + 1]) for i in range(len(shards))]
    folder = lake.uri(stage_prefix(EXTRACTED, drop, STAGING), "decisions")
    decisions = index.decide_parts(drop, list(zip([0, *ends[:-1]], ends, strict=True)), folder)
    task = DedupTask(lake, tuple(decisions.parts), tuple(committed_parts(lake, FILTERED, drop, REJECTS)))
    key = fingerprint(EXTRACTED, code_version, commit_version(lake, FILTERED, drop), decisions.sources)
    stage = ShardStage(EXTRACTED, drop, lake, extracted_schema(decisions), dedup_shard, task, key, WRITE_BATCH_ROWS)
    return run_stage(engine, stage, shards), decisions


def stale_drops(index: BandIndex) -> dict[str, str]:
    """Drops whose extracted_text was decided against index versions of earlier drops that changed since."""
    return index.stale_outputs(EXTRACTED)
