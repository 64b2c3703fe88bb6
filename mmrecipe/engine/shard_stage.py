"""A stage on shards: the picklable `ShardStage`, what one shard returns, and the driver that publishes them.

`run_stage(engine, stage, shards)` is the whole driver: it reuses every shard whose completion marker
exists, runs the others on the engine, and publishes all parts with one commit. A shard writes its
data, rejects and side parts plus its marker (the `ShardResult` as JSON) under a staging key derived
from (asset, partition, `stage.fingerprint`, shard span), so a re-run after a crash (the driver
killed) redoes only the shards that did not finish. The fingerprint must cover everything the output
depends on: stage config, code version, the input's commit version (see `fingerprint`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mmrecipe.engine.engines import WORKER_CRASHED, Engine
from mmrecipe.engine.shards import Shard, read_shard
from mmrecipe.engine.steps import StepStats, step_metadata
from mmrecipe.stage_output import (
    PROVENANCE_COLUMNS,
    REJECTS,
    STAGING,
    Part,
    PartWriter,
    StageCounts,
    StageOutput,
    publish_commit,
    stage_prefix,
    stage_uri,
)
from mmrecipe.storage import PARQUET_OPTIONS, Storage

MARKER = "_DONE.json"
# a shard function: (its config, the shard, the shard's writer) -> a small JSON-able summary (histograms...)
ShardFunction = Callable[[Any, Shard, "ShardOutput"], Mapping[str, Any]]


def fingerprint(*parts: object) -> str:
    """A short digest of everything a stage's output depends on (configs by `repr`, versions, input commits)."""
    return hashlib.sha256("\x1f".join(repr(p) for p in parts).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class ShardStage:
    """What runs on every shard of one stage partition: output schema, shard function and its config."""

    asset: str
    partition: str
    lake: Storage
    schema: pa.Schema
    fn: ShardFunction  # a module-level function, so that it pickles by reference
    config: Any  # picklable; models inside it are loaded per worker through `worker_cached`
    fingerprint: str
    batch_rows: int = 2048

    def staging(self, shard: Shard) -> str:
        """The staging folder of one shard's parts and marker."""
        return self.lake.uri(stage_prefix(self.asset, self.partition, STAGING), self.fingerprint, shard.span)


@dataclass
class ShardResult:
    """What one shard produced: its parts, counts, step stats, preview rows and summary (`extra`)."""

    shard: Shard
    data: Part
    rejects: Part
    side: dict[str, Part]
    counts: StageCounts
    steps: dict[str, StepStats]
    preview: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    reused: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "span": self.shard.span,
                "data": self.data.as_json(),
                "rejects": self.rejects.as_json(),
                "side": {k: p.as_json() for k, p in self.side.items()},
                "kept": self.counts.kept,
                "dropped": dict(self.counts.dropped),
                "rejected": dict(self.counts.rejected),
                "steps": {k: s.as_json() for k, s in self.steps.items()},
                "preview": self.preview,
                "extra": self.extra,
            },
            sort_keys=True,
            default=str,
        )

    @classmethod
    def from_json(cls, shard: Shard, stage: str, text: str) -> ShardResult:
        d = json.loads(text)
        counts = StageCounts(stage, d["kept"], Counter(d["dropped"]), Counter(d["rejected"]))
        steps = {k: StepStats.from_json(s) for k, s in d["steps"].items()}
        side = {k: Part.from_json(p) for k, p in d["side"].items()}
        return cls(shard, Part.from_json(d["data"]), Part.from_json(d["rejects"]), side, counts, steps,
                   d["preview"], d["extra"], reused=True)  # fmt: skip


class ShardOutput(PartWriter):
    """One shard's writer: kept rows and rejects (as `PartWriter`), side tables, and its step stats."""

    def __init__(self, stage: ShardStage, shard: Shard) -> None:
        self.folder = stage.staging(shard)
        super().__init__(stage.lake, stage.asset, f"{self.folder}/data.parquet", f"{self.folder}/rejects.parquet",
                         stage.schema, stage.batch_rows)  # fmt: skip
        self.lake, self.shard = stage.lake, shard
        self.steps: dict[str, StepStats] = {}
        self.side: dict[str, Part] = {}

    def write_side(self, name: str, table: pa.Table, write: Callable[[Any, pa.Table], None] | None = None) -> None:
        """Write this shard's side table `name` (committed as `side/<partition>/<name>-NNNNN.parquet`).

        `write(sink, table)` writes the Parquet (by default with the lake's options), e.g. bucketed row groups."""
        uri = f"{self.folder}/side-{name}.parquet"
        sink = pa.BufferOutputStream()
        if write is None:
            pq.write_table(table, sink, **PARQUET_OPTIONS)
        else:
            write(sink, table)
        data = sink.getvalue().to_pybytes()
        self.lake.write_bytes(uri, data)
        self.side[name] = Part(uri, table.num_rows, len(data), hashlib.sha256(data).hexdigest())

    def finish(self, extra: Mapping[str, Any]) -> ShardResult:
        """Write the parts and the completion marker; the shard's result."""
        data, rejects = self.close_parts()
        result = ShardResult(self.shard, data, rejects, self.side, self.counts, self.steps, self.preview, dict(extra))
        self.lake.write_bytes(f"{self.folder}/{MARKER}", result.to_json().encode())
        return result


def load_marker(stage: ShardStage, shard: Shard) -> ShardResult | None:
    """The result of a shard that already finished under this fingerprint, or None."""
    uri = f"{stage.staging(shard)}/{MARKER}"
    if not stage.lake.exists(uri):
        return None
    done = ShardResult.from_json(shard, stage.asset, stage.lake.read_bytes(uri).decode())
    parts = [done.data, done.rejects, *done.side.values()]
    # a commit that died while moving parts in has taken some of them: such a shard runs again
    return done if all(stage.lake.exists(p.uri) for p in parts) else None


def run_shard(stage: ShardStage, shard: Shard) -> ShardResult:
    """Run the stage's shard function on one shard (in a worker), or reuse its finished result."""
    if (done := load_marker(stage, shard)) is not None:
        return done
    with ShardOutput(stage, shard) as out:
        extra = stage.fn(stage.config, shard, out)
        return out.finish(extra)


def crashed_shard(stage: ShardStage, shard: Shard, error: str) -> ShardResult:
    """The result of a single record that kills its worker process: a `worker_crashed` reject row."""
    rows = read_shard(stage.lake, shard, [*PROVENANCE_COLUMNS, "warc_length"]).to_pylist()
    with ShardOutput(stage, shard) as out:
        for row in rows:
            out.reject(row, WORKER_CRASHED, error)
        return out.finish({})


@dataclass
class StageRun:
    """A published stage partition run on shards: its output, every shard's result, and the shard counts."""

    output: StageOutput
    results: list[ShardResult]
    steps: dict[str, StepStats]
    shards_total: int
    shards_run: int
    shards_reused: int

    def metadata(self) -> dict[str, int | float]:
        """Shard counts and per-step stats, as materialization metadata."""
        return {"shards_total": self.shards_total, "shards_run": self.shards_run,
                "shards_reused": self.shards_reused, **step_metadata(self.steps)}  # fmt: skip


def run_stage(engine: Engine, stage: ShardStage, shards: list[Shard], preview_rows: int = 5) -> StageRun:
    """Run `stage` over `shards` on `engine` (reusing finished shards) and publish every part with one commit."""
    done = [load_marker(stage, s) for s in shards]
    todo = [s for s, d in zip(shards, done, strict=True) if d is None]
    ran = iter(engine.run(functools.partial(run_shard, stage), todo, functools.partial(crashed_shard, stage)))
    per_shard = [[d] if d is not None else next(ran) for d in done]
    results = [r for rs in per_shard for r in rs]
    side_names = sorted({name for r in results for name in r.side})
    publish_commit(
        stage.lake, stage.asset, stage.partition, [r.data for r in results], [r.rejects for r in results],
        {name: [r.side[name] for r in results if name in r.side] for name in side_names},
    )  # fmt: skip
    counts = StageCounts(stage.asset)
    preview: list[dict[str, Any]] = []
    for r in results:
        counts.kept += r.counts.kept
        counts.dropped.update(r.counts.dropped)
        counts.rejected.update(r.counts.rejected)
        preview += r.preview[: preview_rows - len(preview)]
    output = StageOutput(
        stage_uri(stage.lake, stage.asset, stage.partition),
        stage_uri(stage.lake, stage.asset, stage.partition, REJECTS),
        counts,
        preview,
    )
    reused = sum(1 for d in done if d is not None)
    steps = StepStats.merged(r.steps for r in results)
    return StageRun(output, results, steps, len(shards), len(shards) - reused, reused)
