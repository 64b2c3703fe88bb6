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
}
DEFAULT_SIZE = PodSize("500m", "1Gi", "1", "2Gi", scratch="5Gi")


def stage_gpus(asset: str, settings: Settings) -> int:
    """The GPUs `asset`'s pod requests: its size's, none with `MMRECIPE_GPU=off`."""
    return 0 if settings.gpu.mode == "off" else POD_SIZES.get(asset, DEFAULT_SIZE).gpus


def stage_device(asset: str, settings: Settings) -> str:
    """The device `asset`'s models run on: `cuda` when the stage gets a GPU in this deployment, else `cpu`.

    A stage gets its GPU under the k8s executor (its pod requests one), or under any executor with
    `MMRECIPE_GPU=on` (a GPU workstation); never with `MMRECIPE_GPU=off`.
    """
    gpu_here = settings.gpu.mode == "on" or (settings.gpu.mode == "auto" and settings.executor == "k8s")
    return "cuda" if stage_gpus(asset, settings) and gpu_here else "cpu"


def pod_resources(asset: str, settings: Settings | None = None) -> dict[str, Any]:
    """The op tags that size `asset`'s pod under the k8s_job_executor (and put GPU steps in the gpu pool)."""
    settings = settings or deployment_settings()
    size, gpus = POD_SIZES.get(asset, DEFAULT_SIZE), stage_gpus(asset, settings)
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
