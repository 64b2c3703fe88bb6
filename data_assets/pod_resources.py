"""Per-asset Kubernetes pod resources: the `dagster-k8s/config` op tags each stage's pod gets.

The k8s_job_executor reads these tags to size each step's pod in production; the embedded default
ignores them. GPU stages also ask for a GPU node.
"""

from typing import Any

# asset name -> (cpu request, memory request, cpu limit, memory limit, gpus)
POD_SIZES: dict[str, tuple[str, str, str, str, int]] = {
    "raw_crawl": ("1", "2Gi", "2", "4Gi", 0),
    "extracted_text": ("2", "8Gi", "4", "16Gi", 0),
    "deduped_images": ("2", "8Gi", "4", "16Gi", 0),
    "transcribed_audio": ("4", "16Gi", "8", "32Gi", 1),
    "mixture": ("2", "8Gi", "4", "16Gi", 0),
    "eval_results": ("4", "16Gi", "8", "32Gi", 1),
}
DEFAULT_SIZE = ("500m", "1Gi", "1", "2Gi", 0)


def pod_resources(asset: str) -> dict[str, Any]:
    """The op tags that size `asset`'s pod under the k8s_job_executor."""
    cpu, mem, cpu_lim, mem_lim, gpus = POD_SIZES.get(asset, DEFAULT_SIZE)
    resources: dict[str, Any] = {"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": cpu_lim, "memory": mem_lim}}
    pod_spec: dict[str, Any] = {}
    if gpus:
        resources["limits"]["nvidia.com/gpu"] = str(gpus)
        pod_spec = {
            "node_selector": {"mmrecipe.io/node-pool": "gpu"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        }
    config: dict[str, Any] = {"container_config": {"resources": resources}}
    if pod_spec:
        config["pod_spec_config"] = pod_spec
    return {"dagster-k8s/config": config}
