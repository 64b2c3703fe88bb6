"""Per-asset Kubernetes pod resources: the `dagster-k8s/config` op tags each stage's pod gets.

The k8s_job_executor reads these tags to size each step's pod in production; the embedded default
ignores them. GPU stages also ask for a GPU, a GPU node (node selector + toleration) and a slot
in the instance's `gpu` concurrency pool, so no more GPU steps run at once than the pool allows
(`dagster instance concurrency set gpu N`; the Helm chart sets it on install).

`MMRECIPE_GPU_NODE_SELECTOR` ("label=value[,label=value]") overrides the GPU node selector for
clusters that label GPU nodes differently; it is read when the code location loads.
"""

import os
from dataclasses import dataclass
from typing import Any

GPU_POOL = "gpu"
POOL_TAG = "dagster/concurrency_key"  # what Dagster reads as the op's pool when `pool=` is not set
DEFAULT_GPU_NODE_SELECTOR = {"mmrecipe.io/node-pool": "gpu"}
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
    "mixture": PodSize("2", "8Gi", "4", "16Gi", scratch="50Gi"),
    "eval_results": PodSize("4", "16Gi", "8", "32Gi", gpus=1, scratch="20Gi"),
}
DEFAULT_SIZE = PodSize("500m", "1Gi", "1", "2Gi", scratch="5Gi")


def gpu_node_selector(env: dict[str, str] | None = None) -> dict[str, str]:
    """The node selector of GPU pods: MMRECIPE_GPU_NODE_SELECTOR if set, else `mmrecipe.io/node-pool=gpu`."""
    raw = (os.environ if env is None else env).get("MMRECIPE_GPU_NODE_SELECTOR", "").strip()
    if not raw:
        return dict(DEFAULT_GPU_NODE_SELECTOR)
    pairs = [p.strip() for p in raw.split(",") if p.strip()]
    if not all("=" in p and p.split("=", 1)[0] for p in pairs):
        raise ValueError(
            f"MMRECIPE_GPU_NODE_SELECTOR={raw!r}: expected label=value pairs separated by commas, "
            "e.g. 'nvidia.com/gpu.present=true'"
        )
    return dict(p.split("=", 1) for p in pairs)


def pod_resources(asset: str) -> dict[str, Any]:
    """The op tags that size `asset`'s pod under the k8s_job_executor (and put GPU steps in the gpu pool)."""
    size = POD_SIZES.get(asset, DEFAULT_SIZE)
    resources: dict[str, Any] = {
        "requests": {"cpu": size.cpu, "memory": size.memory, "ephemeral-storage": size.scratch},
        "limits": {"cpu": size.cpu_limit, "memory": size.memory_limit, "ephemeral-storage": size.scratch},
    }
    config: dict[str, Any] = {"container_config": {"resources": resources}}
    tags: dict[str, Any] = {"dagster-k8s/config": config}
    if size.gpus:
        resources["requests"]["nvidia.com/gpu"] = str(size.gpus)
        resources["limits"]["nvidia.com/gpu"] = str(size.gpus)
        config["pod_spec_config"] = {"node_selector": gpu_node_selector(), "tolerations": GPU_TOLERATIONS}
        tags[POOL_TAG] = GPU_POOL
    return tags
