"""Drop stages on shards: plan shards, run a pure shard function on an engine, publish with one commit.

The API every sharded stage uses (the Dagster asset is the driver; it never holds records):

1. **Plan.** `plan_shards(lake, drop, kind, target_bytes)` -> `list[Shard]`: spans of the drop's raw_crawl
   records of one kind (`html`/`image`/`audio`), cut by summed `warc_length` (`MMRECIPE_SHARD_BYTES`); at
   least one shard. `part_shards(lake, asset, drop)`: one shard per committed data part of an upstream stage.
   A shard function reads its rows with `read_shard(lake, shard, columns)`.
2. **Declare the steps.** A shard function has the signature `fn(config, shard, out: ShardOutput) -> dict`
   (module level, so it pickles; `config` is picklable). It runs its records through a declared list of
   `Step(name, run)` with `run_steps(steps, items, out.steps)`: each step gets the alive `Item`s and sets
   their `value` or an `Outcome(DROPPED|REJECTED, reason, detail)`; time and counts per step are recorded.
   It writes with `out.keep(row)`, `out.drop(row, reason, detail)`, `out.reject(...)`, `out.write_side(name,
   table)`, and returns a small JSON-able summary (histograms). Models: `worker_cached(key, build)`.
3. **Run and publish.** `run_stage(engine, ShardStage(asset, partition, lake, schema, fn, config,
   fingerprint(...)), shards)` -> `StageRun`: reuses shards with a completion marker, runs the rest on the
   engine, publishes data/rejects/side parts with one commit file (`mmrecipe.stage_output.publish_commit`),
   and returns the `StageOutput`, the per-shard results (`extra`), summed `steps` and
   `shards_total/run/reused` (`StageRun.metadata()`). A record that kills its worker process is rejected
   as `worker_crashed`.
4. **Engines** (configuration only): `make_engine("local"|"ray", workers, address, num_cpus, num_gpus)`;
   `LocalEngine(workers)` (spawn process pool; inline for one shard or worker) and `RayEngine(address,
   num_cpus, num_gpus, max_retries)`. Results come back in shard order.

Readers of any stage partition use `mmrecipe.stage_output`: `committed_parts`, `read_stage_table`,
`iter_stage_rows`, `committed_rows`, `stage_uri` (the folder `pyarrow.dataset` reads).
"""

from mmrecipe.engine.engines import WORKER_CRASHED, Engine, LocalEngine, RayEngine, make_engine, worker_cached
from mmrecipe.engine.shard_stage import (
    ShardOutput,
    ShardResult,
    ShardStage,
    StageRun,
    fingerprint,
    run_shard,
    run_stage,
)
from mmrecipe.engine.shards import DEFAULT_SHARD_BYTES, Shard, part_shards, plan_shards, read_shard
from mmrecipe.engine.steps import DROPPED, REJECTED, Item, Outcome, Step, StepStats, run_steps, step_metadata

__all__ = [
    "DEFAULT_SHARD_BYTES", "DROPPED", "REJECTED", "WORKER_CRASHED", "Engine", "Item", "LocalEngine", "Outcome",
    "RayEngine", "Shard", "ShardOutput", "ShardResult", "ShardStage", "StageRun", "Step", "StepStats",
    "fingerprint", "make_engine", "part_shards", "plan_shards", "read_shard", "run_shard", "run_stage",
    "run_steps", "step_metadata", "worker_cached",
]  # fmt: skip
