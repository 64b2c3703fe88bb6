"""A slowed-down copy of the engine tests' stage, so a fault can strike while shards are still running.

Importable (not a test file) so Ray workers and the driver subprocess can unpickle it; run as a script it
is the driver that `test_the_driver_killed_mid_stage...` kills: `python -m tests.scale.slow_stage LAKE ADDRESS`.
"""

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmrecipe.engine import RayEngine, Shard, ShardOutput, ShardStage, fingerprint, plan_shards, run_stage
from mmrecipe.storage import Storage
from tests.engine_stage import SCHEMA, SizeConfig, sized_pages

SHARD_BYTES = 4_000  # the test drop's 40 pages make about a dozen shards


@dataclass(frozen=True)
class SlowConfig:
    sizes: SizeConfig
    seconds: float  # each shard sleeps this long before it runs


def slow_sized_pages(config: SlowConfig, shard: Shard, out: ShardOutput) -> Mapping[str, Any]:
    """`sized_pages`, after a pause: the same output, slowly."""
    time.sleep(config.seconds)
    return sized_pages(config.sizes, shard, out)


def slow_stage(lake: Storage, seconds: float, poison: str = "") -> ShardStage:
    """The slow stage over drop d1; its fingerprint ignores the pause, so slow and fast runs share markers."""
    sizes = SizeConfig(min_length=1_000, poison=poison)
    config = SlowConfig(sizes, seconds)
    return ShardStage("sized", "d1", lake, SCHEMA, slow_sized_pages, config, fingerprint("sized", 1, sizes))


def main(lake_root: str, address: str, seconds: str) -> None:
    lake = Storage(lake_root, scratch=f"{lake_root}.tmp")
    run_stage(RayEngine(address), slow_stage(lake, float(seconds)), plan_shards(lake, "d1", "html", SHARD_BYTES))


if __name__ == "__main__":
    main(*sys.argv[1:])
