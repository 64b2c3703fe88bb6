"""The chart's Ray side (`ray.enabled`): a KubeRay RayCluster, the drivers' env and RBAC, rendered by the real helm.

The RayCluster is validated against KubeRay's CRD schema (tests/production/kuberay_crds, strict: unknown
fields fail); everything else with `kubernetes-validate --strict`.
"""

import copy
import json
from pathlib import Path

import pytest
import yaml

from tests.production.prod_support import HELM_DIR, helm_template, kuberay_errors, validate_manifests

pytestmark = pytest.mark.slow  # the real helm binary and kubernetes-validate

EXAMPLE = yaml.safe_load((HELM_DIR / "examples" / "values-aws.yaml").read_text())
RAY = {**EXAMPLE, "ray": {"enabled": True}}


def _render(helm: Path, ray: dict, **top: object) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for m in helm_template(helm, {**EXAMPLE, **top, "ray": ray}):
        kinds.setdefault(m["kind"], []).append(m)
    return kinds


def _container_context(kinds: dict[str, list[dict]]) -> dict:
    [deployment] = kinds["Deployment"]
    [server] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    return json.loads(env["DAGSTER_CONTAINER_CONTEXT"])["k8s"]


@pytest.mark.parametrize(
    ("ray", "top"),
    [
        ({"enabled": True}, {}),
        ({"enabled": True, "gpuWorkers": {"enabled": False}}, {}),
        ({"enabled": True, "gpuWorkers": {"gpus": 4, "maxReplicas": 16}}, {"gpuNodeSelector": "gpu=a100,zone=b"}),
        ({"enabled": True}, {"aws": {"credentialsSecret": "mmrecipe-aws"}, "imagePullSecrets": [{"name": "reg"}]}),
    ],
    ids=["example", "cpu-only", "4-gpu-nodes", "static-keys-pull-secret"],
)
def test_every_ray_manifest_is_valid(helm: Path, tmp_path: Path, ray: dict, top: dict) -> None:
    manifests = [m for ms in _render(helm, ray, **top).values() for m in ms]
    custom = [m for m in manifests if m["apiVersion"].startswith("ray.io/")]
    assert [m["kind"] for m in custom] == ["RayCluster"]
    for m in custom:
        assert kuberay_errors(m) == [], m["metadata"]["name"]
    validate_manifests([m for m in manifests if m not in custom], tmp_path)


def test_the_crd_check_rejects_what_kuberay_would_reject_or_silently_drop(helm: Path) -> None:
    [cluster] = _render(helm, {"enabled": True})["RayCluster"]
    bad = copy.deepcopy(cluster)
    bad["spec"]["workerGroupSpecs"][0]["minReplica"] = 2  # a typo the API server would prune
    del bad["spec"]["workerGroupSpecs"][1]["groupName"]
    bad["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # rayStartParams are strings
    bad["spec"]["autoscalerOptions"]["upscalingMode"] = "Fast"
    bad["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {}
    assert kuberay_errors(bad) == [
        "spec/autoscalerOptions/upscalingMode: 'Fast' is not one of ['Default', 'Aggressive', 'Conservative']",
        "spec/headGroupSpec/rayStartParams/num-cpus: 0 is not of type 'string'",
        "spec/headGroupSpec/template/spec/containers/0/resources: "
        "Additional properties are not allowed ('limit' was unexpected)",
        "spec/workerGroupSpecs/0: Additional properties are not allowed ('minReplica' was unexpected)",
        "spec/workerGroupSpecs/1: 'groupName' is a required property",
    ]


def test_ray_cluster_has_a_taskless_head_an_autoscaling_cpu_group_and_a_gpu_group(helm: Path) -> None:
    [cluster] = _render(helm, {"enabled": True}, gpuNodeSelector="nvidia.com/gpu.present=true")["RayCluster"]
    spec = cluster["spec"]
    assert cluster["metadata"]["name"] == "mmrecipe-ray" and spec["rayVersion"] == "2.60.0"
    assert spec["enableInTreeAutoscaling"] is True and spec["autoscalerOptions"]["idleTimeoutSeconds"] == 120
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # shards never land on the head
    head_ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert head_ports == {"gcs-server": 6379, "dashboard": 8265, "client": 10001}

    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert sorted(groups) == ["cpu", "gpu"]
    cpu, gpu = groups["cpu"], groups["gpu"]
    assert (cpu["minReplicas"], cpu["maxReplicas"], cpu["replicas"]) == (1, 20, 1)
    assert (gpu["minReplicas"], gpu["maxReplicas"], gpu["replicas"]) == (0, 4, 0)  # scaled up only for GPU shards
    assert "num-gpus" not in cpu["rayStartParams"] and gpu["rayStartParams"]["num-gpus"] == "1"
    [gpu_worker] = gpu["template"]["spec"]["containers"]
    assert gpu_worker["resources"]["limits"]["nvidia.com/gpu"] == gpu["rayStartParams"]["num-gpus"]
    assert "nvidia.com/gpu" not in cpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["template"]["spec"][
        "tolerations"
    ]

    # every Ray pod: mmrecipe's image, identity and env (lake, S3), non-root, read-only root, /tmp and /dev/shm
    for pod in [head["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]:
        [c] = pod["containers"]
        assert pod["serviceAccountName"] == "mmrecipe" and pod["securityContext"]["runAsNonRoot"] is True
        assert c["image"] == f"{EXAMPLE['image']['repository']}:{EXAMPLE['image']['tag']}"
        assert c["envFrom"] == [{"configMapRef": {"name": "mmrecipe-env"}}]  # not the drivers' ray-client env
        assert "env" not in c  # no Postgres password: Ray pods never touch the Dagster instance
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert {v["mountPath"] for v in c["volumeMounts"]} == {"/tmp", "/dev/shm"}
        assert {v["name"]: v["emptyDir"].get("medium") for v in pod["volumes"]} == {"tmp": None, "shm": "Memory"}
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]) <= set(c["resources"]["limits"])


def test_drivers_get_the_engine_and_address_and_rbac_to_reach_the_cluster(helm: Path) -> None:
    kinds = _render(helm, {"enabled": True})
    configmaps = {c["metadata"]["name"]: c["data"] for c in kinds["ConfigMap"]}
    assert configmaps["mmrecipe-ray-client"] == {
        "MMRECIPE_ENGINE": "ray",
        "RAY_ADDRESS": "ray://mmrecipe-ray-head-svc.data.svc:10001",  # KubeRay's <cluster>-head-svc
    }
    assert "RAY_ADDRESS" not in configmaps["mmrecipe-env"]
    # the code server, and through its container context every run and step pod, read it
    [deployment] = kinds["Deployment"]
    [server] = deployment["spec"]["template"]["spec"]["containers"]
    assert {"configMapRef": {"name": "mmrecipe-ray-client"}} in server["envFrom"]
    assert _container_context(kinds)["env_config_maps"] == ["mmrecipe-env", "mmrecipe-ray-client"]

    roles = {r["metadata"]["name"]: r for r in kinds["Role"]}
    verbs = {
        (g, r): set(rule["verbs"]) for rule in roles["mmrecipe-ray"]["rules"] for g in rule["apiGroups"]
        for r in rule["resources"]
    }  # fmt: skip
    assert {"get", "list", "watch", "patch"} <= verbs[("ray.io", "rayclusters")]  # drivers read; autoscaler patches
    assert {"get", "list", "watch"} <= verbs[("", "pods")] and "get" in verbs[("", "services")]
    assert not any("create" in v or "delete" in v for (g, _), v in verbs.items() if g == "ray.io")
    [binding] = [b for b in kinds["RoleBinding"] if b["metadata"]["name"] == "mmrecipe-ray"]
    assert binding["roleRef"]["name"] == "mmrecipe-ray"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mmrecipe", "namespace": "data"}]


def test_ray_is_off_by_default(helm: Path) -> None:
    kinds = _render(helm, {})
    assert "RayCluster" not in kinds
    assert "mmrecipe-ray-client" not in {c["metadata"]["name"] for c in kinds["ConfigMap"]}
    assert "mmrecipe-ray" not in {r["metadata"]["name"] for r in kinds["Role"]}
    assert _container_context(kinds)["env_config_maps"] == ["mmrecipe-env"]
