"""The engine resource: where a drop stage's shards run (`MMRECIPE_ENGINE`, `RAY_ADDRESS`, `MMRECIPE_WORKERS`).

Built from the settings at the edge; the asset asks it for an engine with the stage's Ray task resources
(`resources.pod_resources.ray_task_resources(stage, settings)`: `num_cpus`/`num_gpus`, fractional allowed)
and for the shard size. Ray is imported only when the engine
is `ray`, and only when shards run.
"""

import dagster as dg

from mmrecipe.engine import Engine, make_engine
from mmrecipe.settings import DEFAULT_SHARD_BYTES, ENGINES, Settings


class EngineResource(dg.ConfigurableResource):
    """The shard engine of drop stages: `local` (process pool) or `ray`, with the shard size."""

    name: str = "local"
    ray_address: str = ""
    workers: int = 0  # 0: every usable CPU
    shard_bytes: int = DEFAULT_SHARD_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> "EngineResource":
        e = settings.engine
        return cls(name=e.name, ray_address=e.ray_address, workers=e.workers, shard_bytes=e.shard_bytes)

    def engine(self, num_cpus: float = 1.0, num_gpus: float = 0.0) -> Engine:
        """The engine, its Ray tasks asking for `num_cpus` CPUs and `num_gpus` GPUs."""
        if self.name not in ENGINES:
            raise dg.Failure(f"engine {self.name!r} is unknown: set MMRECIPE_ENGINE to one of {ENGINES}")
        return make_engine(self.name, self.workers, self.ray_address, num_cpus, num_gpus)
