"""Per-asset Kubernetes pod resources: the `dagster-k8s/config` op tags each stage's pod gets.

The k8s_job_executor reads these tags to size each step's pod in production; the embedded default
ignores them. GPU stages also ask for a GPU, a GPU node (node selector + toleration) and a slot
in the instance's `gpu` concurrency pool, so no more GPU steps run at once than the pool allows
(`dagster instance concurrency set gpu N`; the Helm chart sets it on install).

This is the one place that decides a stage's resources: its pod size, whether it gets a GPU
(`stage_gpus`: the size's GPUs unless `MMRECIPE_GPU=off`) and so the device its models run on
(`stage_device`: `cuda` when it gets a GPU under the k8s executor, or under any with `MMRECIPE_GPU=on`).
`MMRECIPE_GPU_NODE_SELECTOR` ("label=value[,label=value]") overrides the GPU node selector for
clusters that label GPU nodes differently. Both are read when the code location loads.

Under the `ray` engine the shards of a stage run as Ray tasks: `ray_task_resources` says what one shard
task asks Ray for (`RAY_TASK_SIZES`): CPUs, and for the GPU stages (ASR, NSFW scoring, proxy training) a
fraction of a GPU, when this deployment gives GPU stages a GPU (the same rule as `stage_device`). Their
step pods are then drivers (`DRIVER_SIZE`, no GPU): the Ray cluster's GPU workers hold the GPUs.
"""

from dataclasses import dataclass
from typing import Any

from mmrecipe.settings import Settings
from resources.settings import deployment_settings

GPU_POOL = "gpu"
POOL_TAG = "dagster/concurrency_key"  # what Dagster reads as the op's pool when `pool=` is not set
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@dataclass(frozen=True)
class PodSize:
    """Requests and limits of one step pod; `scratch` is ephemeral storage for local temp files."""

    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str
    gpus: int = 0
    scratch: str = "10Gi"


POD_SIZES: dict[str, PodSize] = {
    "raw_crawl": PodSize("1", "2Gi", "2", "4Gi"),
    "extracted_text": PodSize("2", "8Gi", "4", "16Gi"),
    "filtered_text": PodSize("2", "8Gi", "4", "16Gi"),
    "quality_classifier": PodSize("2", "4Gi", "4", "8Gi"),
    "deduped_images": PodSize("2", "8Gi", "4", "16Gi"),
    "transcribed_audio": PodSize("4", "16Gi", "8", "32Gi", gpus=1, scratch="20Gi"),
    "video_clips": PodSize("4", "8Gi", "8", "16Gi", scratch="20Gi"),
    "mixture": PodSize("2", "8Gi", "4", "16Gi", scratch="50Gi"),
    "eval_results": PodSize("4", "16Gi", "8", "32Gi", gpus=1, scratch="20Gi"),
    "ablations": PodSize("4", "16Gi", "8", "32Gi", gpus=1, scratch="20Gi"),
}
DEFAULT_SIZE = PodSize("500m", "1Gi", "1", "2Gi", scratch="5Gi")


@dataclass(frozen=True)
class RayTaskSize:
    """What one shard task of a stage asks Ray for: CPUs and, in GPU deployments, GPUs (a fraction shares one)."""

    cpus: float = 1.0
    gpus: float = 0.0


RAY_TASK_SIZES: dict[str, RayTaskSize] = {
    "raw_crawl": RayTaskSize(1),
    "extracted_text": RayTaskSize(1),
    "filtered_text": RayTaskSize(1),
    "deduped_images": RayTaskSize(1, gpus=0.25),  # NSFW scoring: four shards share a GPU
    "transcribed_audio": RayTaskSize(1, gpus=0.5),  # ASR: Whisper tiny in float16 fits twice on one GPU
    "video_clips": RayTaskSize(1, gpus=0.25),  # its analysis pass: NSFW scoring and ASR of the clips
    "eval_results": RayTaskSize(2, gpus=1),  # proxy training takes a whole GPU
}
DEFAULT_RAY_TASK = RayTaskSize(1)
# drop stages whose shards run as Ray tasks under MMRECIPE_ENGINE=ray; their step pods are then drivers
RAY_DROP_STAGES = frozenset(
    {"raw_crawl", "extracted_text", "filtered_text", "deduped_images", "transcribed_audio", "video_clips"}
)
DRIVER_SIZE = PodSize("500m", "2Gi", "1", "4Gi", scratch="10Gi")  # plans, submits and publishes; holds no records


def on_ray(asset: str, settings: Settings) -> bool:
    """Whether `asset`'s records are processed by Ray tasks (`MMRECIPE_ENGINE=ray`), its step pod being the driver."""
    return settings.engine.name == "ray" and asset in RAY_DROP_STAGES


def pod_size(asset: str, settings: Settings) -> PodSize:
    """The size of `asset`'s step pod: a small driver when its shards run on Ray, else its own size."""
    return DRIVER_SIZE if on_ray(asset, settings) else POD_SIZES.get(asset, DEFAULT_SIZE)


def stage_gpus(asset: str, settings: Settings) -> int:
    """The GPUs `asset`'s pod requests: its size's; none with `MMRECIPE_GPU=off` or when Ray tasks do the work."""
    return 0 if settings.gpu.mode == "off" else pod_size(asset, settings).gpus


def gpus_here(settings: Settings) -> bool:
    """Whether GPU stages get GPUs in this deployment: under the k8s executor (`auto`), always (`on`), never (`off`)."""
    return settings.gpu.mode == "on" or (settings.gpu.mode == "auto" and settings.executor == "k8s")


def stage_device(asset: str, settings: Settings) -> str:
    """The device `asset`'s models run on: `cuda` when the stage gets a GPU in this deployment, else `cpu`.

    A stage gets its GPU under the k8s executor (its pod requests one, or under the `ray` engine its Ray
    tasks do), or under any executor with `MMRECIPE_GPU=on` (a GPU workstation); never with `MMRECIPE_GPU=off`.
    """
    gets_gpu = (
        RAY_TASK_SIZES.get(asset, DEFAULT_RAY_TASK).gpus if on_ray(asset, settings) else stage_gpus(asset, settings)
    )
    return "cuda" if gets_gpu and gpus_here(settings) else "cpu"


def ray_task_resources(stage: str, settings: Settings | None = None) -> dict[str, float]:
    """What one shard task of `stage` asks Ray for: `{"num_cpus": .., "num_gpus": ..}`, for `.options(**...)`.

    GPU stages ask for their fraction of a GPU only where GPU stages get GPUs (`gpus_here`); elsewhere
    (a laptop's local Ray, `MMRECIPE_GPU=off`) they ask for none, so they never wait for a GPU that no node has.
    """
    settings = settings or deployment_settings()
    size = RAY_TASK_SIZES.get(stage, DEFAULT_RAY_TASK)
    return {"num_cpus": float(size.cpus), "num_gpus": float(size.gpus) if gpus_here(settings) else 0.0}


def pod_resources(asset: str, settings: Settings | None = None) -> dict[str, Any]:
    """The op tags that size `asset`'s pod under the k8s_job_executor (and put GPU steps in the gpu pool)."""
    settings = settings or deployment_settings()
    size, gpus = pod_size(asset, settings), stage_gpus(asset, settings)
    resources: dict[str, Any] = {
        "requests": {"cpu": size.cpu, "memory": size.memory, "ephemeral-storage": size.scratch},
        "limits": {"cpu": size.cpu_limit, "memory": size.memory_limit, "ephemeral-storage": size.scratch},
    }
    config: dict[str, Any] = {"container_config": {"resources": resources}}
    tags: dict[str, Any] = {"dagster-k8s/config": config}
    if gpus:
        resources["requests"]["nvidia.com/gpu"] = str(gpus)
        resources["limits"]["nvidia.com/gpu"] = str(gpus)
        node_selector = dict(settings.gpu.node_selector)
        config["pod_spec_config"] = {"node_selector": node_selector, "tolerations": GPU_TOLERATIONS}
        tags[POOL_TAG] = GPU_POOL
    return tags
