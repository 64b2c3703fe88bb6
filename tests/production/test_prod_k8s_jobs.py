"""The Kubernetes Job dagster-k8s would launch for every asset's step, built for real and validated.

Each Job is assembled the way the k8s_job_executor's step handler does it: the production
instance's K8sRunLauncher, the code location's container context exactly as the Helm chart
renders it, then the asset's `dagster-k8s/config` op tags; `construct_dagster_k8s_job` builds it
and `kubernetes-validate --strict` checks it against the Kubernetes schemas.
"""

import json
import types
from pathlib import Path

import dagster as dg
import kubernetes
import pytest
import yaml
from dagster._config import process_config
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import construct_dagster_k8s_job, get_k8s_job_name, get_user_defined_k8s_config

from mmrecipe.settings import Settings
from resources.pod_resources import GPU_POOL, POD_SIZES, POOL_TAG
from resources.settings import environment_settings
from tests.production.prod_support import HELM_DIR, PROD_INSTANCE_YAML, helm_template, validate_manifests

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mmrecipe:0.1.0-3f9c2ab"
GPU_STAGES = {"transcribed_audio", "eval_results", "ablations"}


@pytest.fixture
def launcher(in_cluster_service_account: Path, monkeypatch: pytest.MonkeyPatch) -> K8sRunLauncher:
    """The run launcher of helm/dagster.prod.yaml, configured from the env the chart sets."""
    for k, v in {
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "mmrecipe-instance",
        "DAGSTER_K8S_NAMESPACE": "data",
        "DAGSTER_K8S_SERVICE_ACCOUNT": "mmrecipe",
        "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
    }.items():
        monkeypatch.setenv(k, v)
    config = yaml.safe_load(PROD_INSTANCE_YAML.read_text())["run_launcher"]
    assert (config["module"], config["class"]) == ("dagster_k8s", "K8sRunLauncher")
    processed = process_config(K8sRunLauncher.config_type(), config["config"])
    assert processed.success, processed.errors
    return K8sRunLauncher(**processed.value)


@pytest.fixture
def chart_container_context(helm: Path) -> dict:
    """The DAGSTER_CONTAINER_CONTEXT the chart gives the code server (example AWS values)."""
    values = yaml.safe_load((HELM_DIR / "examples" / "values-aws.yaml").read_text())
    [deployment] = [m for m in helm_template(helm, values) if m["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    return json.loads(env["DAGSTER_CONTAINER_CONTEXT"])


def _step_tags(op: dg.OpDefinition) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in op.tags.items()}


def _step_job(launcher: K8sRunLauncher, context: dict, op: dg.OpDefinition, job_name: str) -> dict:
    """The Job manifest K8sStepHandler.launch_step would create for `op`'s step."""
    code_location = types.SimpleNamespace(repository_origin=types.SimpleNamespace(container_context=context))
    run = types.SimpleNamespace(job_code_origin=code_location, tags={})
    ctx = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)  # type: ignore[arg-type]
    ctx = ctx.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(_step_tags(op))))
    run_id = "0f3c4a1e-5b6d-4c7e-8f90-1a2b3c4d5e6f"
    name = f"dagster-step-{get_k8s_job_name(run_id, op.name)}"
    job = construct_dagster_k8s_job(
        job_config=ctx.get_k8s_job_config(IMAGE, launcher),
        args=["dagster", "api", "execute_step"],
        job_name=name,
        pod_name=name,
        component="step_worker",
        user_defined_k8s_config=ctx.run_k8s_config,
        labels={"dagster/job": job_name, "dagster/op": op.name, "dagster/run-id": run_id},
        env_vars=[
            {"name": "DAGSTER_RUN_JOB_NAME", "value": job_name},
            {"name": "DAGSTER_RUN_STEP_KEY", "value": op.name},
        ],
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def test_production_definitions_use_the_k8s_job_executor(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from data_assets.definitions import build_defs

    monkeypatch.setenv("MMRECIPE_EXECUTOR", "k8s")
    defs = build_defs(environment_settings())
    for job_name in ("drop_stages_job", "recipe_stages_job"):
        assert defs.resolve_job_def(job_name).executor_def.name == "k8s", job_name


def test_every_asset_step_builds_a_valid_sized_job(
    settings: Settings, launcher: K8sRunLauncher, chart_container_context: dict, tmp_path: Path
) -> None:
    from data_assets.definitions import build_defs

    graph = build_defs(settings).resolve_asset_graph()
    ops = {
        graph.get(key).assets_def.op.name: graph.get(key).assets_def.op
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable
    }
    assert {"raw_crawl", "mixture"} <= set(ops)
    jobs = {name: _step_job(launcher, chart_container_context, op, "drop_stages_job") for name, op in ops.items()}
    validate_manifests(list(jobs.values()), tmp_path)

    for name, job in jobs.items():
        pod = job["spec"]["template"]["spec"]
        [container] = pod["containers"]
        res = container["resources"]
        assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"]), name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"], name
        assert pod["serviceAccountName"] == "mmrecipe"
        assert {"configMapRef": {"name": "mmrecipe-env"}} in container["envFrom"]
        password = next(e for e in container["env"] if e["name"] == "DAGSTER_PG_PASSWORD")
        assert password["valueFrom"]["secretKeyRef"] == {
            "name": "dagster-postgresql-secret",
            "key": "postgresql-password",
        }
        size = POD_SIZES.get(name) if "dagster-k8s/config" in ops[name].tags else None
        if size is None:  # no pod_resources tags: the run-worker defaults from the chart apply
            assert "nvidia.com/gpu" not in res["limits"] and "nodeSelector" not in pod, name
            continue
        assert (res["requests"]["cpu"], res["requests"]["memory"]) == (size.cpu, size.memory), name
        assert (res["limits"]["cpu"], res["limits"]["memory"]) == (size.cpu_limit, size.memory_limit), name
        assert res["limits"]["ephemeral-storage"] == size.scratch, name
        if name in GPU_STAGES:
            assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == "1", name
            assert pod["nodeSelector"] == {"mmrecipe.io/node-pool": "gpu"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
            assert ops[name].tags[POOL_TAG] == GPU_POOL, f"{name} is not in the gpu pool"
        else:
            assert "nvidia.com/gpu" not in res["limits"] and "nodeSelector" not in pod, name
            assert POOL_TAG not in ops[name].tags, name
    # the six stages are all sized (a stage without op tags would silently get run-worker resources)
    stages = {"raw_crawl", "extracted_text", "deduped_images", "transcribed_audio", "mixture", "eval_results"}
    unsized = sorted(s for s in stages & set(ops) if "dagster-k8s/config" not in ops[s].tags)
    assert unsized == [], f"stages without pod_resources op tags: {unsized}"
