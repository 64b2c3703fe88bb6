"""The Kubernetes Job dagster-k8s launches for every asset's step, captured from its own executor and validated.

Each asset is run with `dg.execute_job` under the code location's `k8s_job_executor` (MMRECIPE_EXECUTOR=k8s),
on an instance whose run launcher is helm/dagster.prod.yaml's K8sRunLauncher, from a code location origin that
carries the image and the container context exactly as the Helm chart renders them for the code server. The
executor's step handler builds the step's Job and POSTs it to the Kubernetes API: here a loopback server that
records the Job and refuses it (no cluster), which ends the run. `kubernetes-validate --strict` then checks
every recorded Job against the Kubernetes schemas.
"""

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mmrecipe.settings import Settings
from resources.pod_resources import GPU_POOL, POD_SIZES, POOL_TAG
from resources.settings import environment_settings
from tests.production.prod_support import HELM_DIR, PROD_INSTANCE_YAML, helm_template, validate_manifests

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mmrecipe:0.1.0-3f9c2ab"
GPU_STAGES = {"transcribed_audio", "eval_results", "ablations"}
NAMESPACE = "data"
CHART_ENV = {
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "mmrecipe-instance",
    "DAGSTER_K8S_NAMESPACE": NAMESPACE,
    "DAGSTER_K8S_SERVICE_ACCOUNT": "mmrecipe",
    "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
}
JOBS_PATH = re.compile(r"/apis/batch/v1/namespaces/([^/]+)/jobs")


class _KubeApi(BaseHTTPRequestHandler):
    """The few Kubernetes API calls a step launch makes: create a Job (recorded, then refused), list and delete."""

    server: "KubeApiServer"

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        match = JOBS_PATH.fullmatch(self.path.split("?")[0])
        if not match:
            return self._reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404})
        self.server.jobs.append((match.group(1), body))
        message = "jobs.batch is forbidden: the test's API server records Jobs and runs none"
        self._reply(403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                          "message": message, "code": 403})  # fmt: skip

    def do_GET(self) -> None:  # the step handler lists a refused Job's pods before deleting it
        self._reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})

    def do_DELETE(self) -> None:
        self._reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def log_message(self, *args: object) -> None:
        pass


class KubeApiServer(ThreadingHTTPServer):
    """A loopback stand-in for the Kubernetes API that keeps every Job POSTed to it: (namespace, manifest)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _KubeApi)
        self.jobs: list[tuple[str, dict]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def kube_api() -> Iterator[KubeApiServer]:
    server = KubeApiServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def k8s_instance(
    settings: Settings, kube_api: KubeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """An instance with helm/dagster.prod.yaml's K8sRunLauncher, reaching the test's API server by kubeconfig."""
    for k, v in CHART_ENV.items():
        monkeypatch.setenv(k, v)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": kube_api.url}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": NAMESPACE}}],
    }))  # fmt: skip
    launcher = yaml.safe_load(PROD_INSTANCE_YAML.read_text())["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert launcher["config"]["load_incluster_config"] is True  # in the cluster; here the kubeconfig instead
    launcher["config"] |= {"load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    with dg.instance_for_test(overrides={"run_launcher": launcher}, temp_dir=settings.dagster_home) as instance:
        yield instance


@pytest.fixture
def chart_container_context(helm: Path) -> dict:
    """The DAGSTER_CONTAINER_CONTEXT the chart gives the code server (example AWS values)."""
    values = yaml.safe_load((HELM_DIR / "examples" / "values-aws.yaml").read_text())
    [deployment] = [m for m in helm_template(helm, values) if m["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    return json.loads(env["DAGSTER_CONTAINER_CONTEXT"])


def one_asset_job(asset: str) -> dg.JobDefinition:
    """A job of the code location (its assets, checks, resources and executor) over one asset and its checks,
    built from the process environment (MMRECIPE_EXECUTOR=k8s); reconstructable by module and name."""
    from data_assets.definitions import build_defs

    defs = build_defs(environment_settings())
    job = dg.define_asset_job(f"{asset}_job", selection=dg.AssetSelection.assets(asset))
    bound = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, resources=defs.resources,
                           executor=defs.executor, jobs=[job])  # fmt: skip
    return bound.resolve_job_def(job.name)


def launched_step_job(
    instance: dg.DagsterInstance,
    kube_api: KubeApiServer,
    context: dict,
    asset: dg.AssetKey,
    step: str,
    partition: str | None,
) -> dict:
    """The Job manifest the k8s_job_executor POSTs for `asset`'s step, from a run of that asset alone."""
    job = dg.build_reconstructable_job(__name__, one_asset_job.__name__, (asset.to_user_string(),))
    # the code server's origin: its image (DAGSTER_CURRENT_IMAGE) and container context, as the chart sets them
    job = job._replace(repository=job.repository._replace(container_image=IMAGE, container_context=context))
    before = len(kube_api.jobs)
    tags = {"dagster/partition": partition} if partition else None
    result = dg.execute_job(job, instance, tags=tags)
    assert not result.success, "no cluster here: the API server refuses the Job, so the run must fail"
    [(namespace, manifest)] = kube_api.jobs[before:]
    assert namespace == NAMESPACE
    events = [e.dagster_event for e in instance.all_logs(result.run_id) if e.dagster_event]
    [starting] = [e for e in events if e.event_type_value == "STEP_WORKER_STARTING"]
    assert starting.step_key == step and manifest["metadata"]["name"] in str(starting.message), starting.message
    refused = "records Jobs and runs none"  # the API server's answer ended the run
    assert any(refused in str(e.event_specific_data) for e in events if e.is_engine_event), asset
    return manifest


def test_production_definitions_use_the_k8s_job_executor(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from data_assets.definitions import build_defs

    monkeypatch.setenv("MMRECIPE_EXECUTOR", "k8s")
    defs = build_defs(environment_settings())
    for job_name in ("drop_stages_job", "recipe_stages_job"):
        assert defs.resolve_job_def(job_name).executor_def.name == "k8s", job_name


def test_every_asset_step_launches_a_valid_sized_job(
    settings: Settings,
    k8s_instance: dg.DagsterInstance,
    kube_api: KubeApiServer,
    chart_container_context: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MMRECIPE_EXECUTOR", "k8s")
    from data_assets.definitions import build_defs

    graph = build_defs(settings).resolve_asset_graph()
    ops = {}
    jobs = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        if not node.is_materializable:
            continue
        op = node.assets_def.op
        partitions = node.partitions_def
        partition = ("drop-1" if isinstance(partitions, dg.DynamicPartitionsDefinition) else
                     partitions.get_partition_keys()[0]) if partitions else None  # fmt: skip
        ops[op.name] = op
        jobs[op.name] = launched_step_job(k8s_instance, kube_api, chart_container_context, key, op.name, partition)
    assert {"raw_crawl", "mixture"} <= set(ops)
    validate_manifests(list(jobs.values()), tmp_path)

    for name, job in jobs.items():
        assert job["metadata"]["labels"]["dagster/op"] == name
        pod = job["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["image"] == IMAGE and container["args"][:3] == ["dagster", "api", "execute_step"], name
        assert {"name": "DAGSTER_RUN_STEP_KEY", "value": name} in container["env"], name
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
