"""What one shard task asks Ray for, per stage and deployment, and that exactly that reaches Ray on a real cluster."""

import pytest

from mmrecipe.settings import Settings
from resources.pod_resources import POD_SIZES, RAY_TASK_SIZES, ray_task_resources, stage_device
from tests.scale.ray_cluster import RayCluster

GPU_STAGES = ("deduped_images", "transcribed_audio", "video_clips", "eval_results")  # NSFW, ASR, proxy training


def _settings(**env: str) -> Settings:
    return Settings.from_env({"MMRECIPE_HOME": "/tmp/mmrecipe-unused", **env})


@pytest.mark.parametrize(
    ("env", "stage", "expected"),
    [
        ({}, "raw_crawl", {"num_cpus": 1.0, "num_gpus": 0.0}),
        ({}, "extracted_text", {"num_cpus": 1.0, "num_gpus": 0.0}),
        ({}, "transcribed_audio", {"num_cpus": 1.0, "num_gpus": 0.0}),  # embedded default: no GPU anywhere
        ({"MMRECIPE_EXECUTOR": "k8s"}, "transcribed_audio", {"num_cpus": 1.0, "num_gpus": 0.5}),
        ({"MMRECIPE_EXECUTOR": "k8s"}, "deduped_images", {"num_cpus": 1.0, "num_gpus": 0.25}),
        ({"MMRECIPE_EXECUTOR": "k8s"}, "video_clips", {"num_cpus": 1.0, "num_gpus": 0.25}),  # NSFW and ASR
        ({"MMRECIPE_EXECUTOR": "k8s"}, "eval_results", {"num_cpus": 2.0, "num_gpus": 1.0}),
        ({"MMRECIPE_EXECUTOR": "k8s"}, "extracted_text", {"num_cpus": 1.0, "num_gpus": 0.0}),  # a CPU stage
        ({"MMRECIPE_EXECUTOR": "k8s", "MMRECIPE_GPU": "off"}, "transcribed_audio", {"num_cpus": 1.0, "num_gpus": 0.0}),
        ({"MMRECIPE_GPU": "on"}, "transcribed_audio", {"num_cpus": 1.0, "num_gpus": 0.5}),  # a GPU workstation
        ({"MMRECIPE_GPU": "on"}, "some_check", {"num_cpus": 1.0, "num_gpus": 0.0}),  # not a stage: the default
    ],
)
def test_each_stage_asks_ray_for_its_cpus_and_its_gpu_fraction_where_gpus_exist(
    env: dict[str, str], stage: str, expected: dict[str, float]
) -> None:
    assert ray_task_resources(stage, _settings(**env)) == expected


def test_gpu_tasks_and_gpu_pods_follow_one_rule() -> None:
    """Where the ASR or eval pod gets a GPU (its models run on cuda), its Ray tasks ask for one too; and vice versa."""
    for env in ({}, {"MMRECIPE_EXECUTOR": "k8s"}, {"MMRECIPE_GPU": "on"}, {"MMRECIPE_GPU": "off"}):
        settings = _settings(**env)
        for stage in ("transcribed_audio", "eval_results"):
            assert POD_SIZES[stage].gpus and RAY_TASK_SIZES[stage].gpus
            on_gpu = stage_device(stage, settings) == "cuda"
            assert (ray_task_resources(stage, settings)["num_gpus"] > 0) == on_gpu, (env, stage)
    assert {s for s, size in RAY_TASK_SIZES.items() if size.gpus} == set(GPU_STAGES)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize(
    ("env", "stage", "assigned"),
    [
        ({}, "extracted_text", {"CPU": 1.0}),
        ({"MMRECIPE_GPU": "on"}, "transcribed_audio", {"CPU": 1.0, "GPU": 0.5}),
        ({"MMRECIPE_GPU": "on"}, "deduped_images", {"CPU": 1.0, "GPU": 0.25}),
    ],
)
def test_the_amounts_reach_ray_on_a_real_cluster(
    ray_cluster: RayCluster, env: dict[str, str], stage: str, assigned: dict[str, float]
) -> None:
    import ray

    @ray.remote
    def shard_task() -> tuple[dict[str, float], str]:
        context = ray.get_runtime_context()
        return context.get_assigned_resources(), context.get_node_id()

    with ray.init(address=ray_cluster.address, namespace="mmrecipe-tests", log_to_driver=False):
        got, node = ray.get(shard_task.options(**ray_task_resources(stage, _settings(**env))).remote(), timeout=60)
    assert got == assigned
    assert node in ray_cluster.worker_node_ids()  # never the head: it has no CPUs


@pytest.mark.parametrize(
    ("stage", "pod_cpu", "pod_gpu", "task_gpus", "device"),
    [
        ("transcribed_audio", "500m", None, 0.5, "cuda"),  # the driver pod has no GPU; its Ray tasks share them
        ("deduped_images", "500m", None, 0.25, "cuda"),
        ("extracted_text", "500m", None, 0.0, "cpu"),
        ("eval_results", "4", "1", 1.0, "cuda"),  # not a drop stage: it keeps its own GPU pod
    ],
)
def test_under_the_ray_engine_drop_stage_pods_are_small_drivers_and_ray_tasks_hold_the_gpus(
    stage: str, pod_cpu: str, pod_gpu: str | None, task_gpus: float, device: str
) -> None:
    from resources.pod_resources import pod_resources

    settings = _settings(MMRECIPE_EXECUTOR="k8s", MMRECIPE_ENGINE="ray", RAY_ADDRESS="ray://head:10001")
    config = pod_resources(stage, settings)["dagster-k8s/config"]
    requests = config["container_config"]["resources"]["requests"]
    assert (requests["cpu"], requests.get("nvidia.com/gpu")) == (pod_cpu, pod_gpu)
    assert ("pod_spec_config" in config) == (pod_gpu is not None)  # GPU node selector only for GPU pods
    assert ray_task_resources(stage, settings)["num_gpus"] == task_gpus
    assert stage_device(stage, settings) == device
