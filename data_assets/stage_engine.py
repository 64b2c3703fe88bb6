"""The engine a drop stage's shards run on, and the shard size: the one hook the image and audio drivers call.

Until the deployment's engine settings (`MMRECIPE_ENGINE`, `RAY_ADDRESS`, `MMRECIPE_SHARD_BYTES`) reach a
resource, every stage runs inline on the local engine in default-sized shards, which `make demo` needs anyway.
GPU stages will pass their Ray task resources (`resources.pod_resources.ray_task_resources`) here.
"""

from mmrecipe.engine import DEFAULT_SHARD_BYTES, Engine, LocalEngine


def stage_engine(asset: str) -> Engine:
    """The engine that runs `asset`'s shards (interim: inline, one worker)."""
    return LocalEngine(1)


def shard_bytes(asset: str) -> int:
    """The target WARC bytes of one of `asset`'s shards."""
    return DEFAULT_SHARD_BYTES
