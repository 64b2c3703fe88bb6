"""A test stage for the engine tests: two declared steps, one of which kills its worker on a chosen record.

It lives in an importable module (not a test file) so that spawned and Ray worker processes can unpickle it.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mmrecipe.engine import DROPPED, Item, Outcome, Shard, ShardOutput, Step, read_shard, run_steps
from mmrecipe.stage_output import PROVENANCE_FIELDS

SCHEMA = pa.schema([*PROVENANCE_FIELDS, pa.field("url", pa.string()), pa.field("size", pa.int64())])


@dataclass(frozen=True)
class SizeConfig:
    min_length: int
    poison: str = ""  # the URL whose record kills its worker process


def sized_pages(config: SizeConfig, shard: Shard, out: ShardOutput) -> Mapping[str, Any]:
    """A test stage: drops small records, kills its own process on the poison URL."""

    def poison(items: list[Item]) -> None:
        if any(it.row["target_uri"] == config.poison for it in items):
            os._exit(3)

    def size(items: list[Item]) -> None:
        for it in items:
            if it.row["warc_length"] < config.min_length:
                it.outcome = Outcome(DROPPED, "too_small", f"{it.row['warc_length']} bytes")

    steps = [Step("poison", poison), Step("size", size)]
    rows = read_shard(out.lake, shard, ["record_id", "drop", "warc_path", "warc_offset", "warc_length", "target_uri"])
    for item in run_steps(steps, [Item(r) for r in rows.to_pylist()], out.steps):
        if item.outcome:
            out.drop(item.row, item.outcome.reason, item.outcome.detail)
        else:
            out.keep({**item.row, "url": item.row["target_uri"], "size": item.row["warc_length"]})
    return {"urls": len(rows)}
