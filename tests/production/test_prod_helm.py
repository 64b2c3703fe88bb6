"""The Helm chart rendered by the real helm binary, every manifest validated, and what it must contain."""

import copy
import json
import re
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext

from tests.production.prod_support import (
    HELM_DIR,
    PROD_INSTANCE_YAML,
    PostgresServer,
    S3Server,
    helm_template,
    validate_manifests,
)

pytestmark = pytest.mark.slow  # real servers and tools: Postgres, moto S3, helm

EXAMPLE = yaml.safe_load((HELM_DIR / "examples" / "values-aws.yaml").read_text())


def _by_kind(manifests: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for m in manifests:
        out.setdefault(m["kind"], []).append(m)
    return out


def _pods(manifests: list[dict]) -> list[tuple[str, dict]]:
    return [
        (m["metadata"]["name"], m["spec"]["template"]["spec"]) for m in manifests if m["kind"] in ("Deployment", "Job")
    ]


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"aws": {"credentialsSecret": "mmrecipe-aws", "endpointUrl": "https://minio.storage:9000"}},
        {
            "rbac": {"create": False},
            "serviceAccount": {"create": False, "name": "existing-sa"},
            "pools": {"setOnInstall": False},
        },
        {"imagePullSecrets": [{"name": "regcred"}], "gpuNodeSelector": "nvidia.com/gpu.present=true"},
    ],
    ids=["example", "minio-static-keys", "bring-your-own-sa", "pull-secret-gpu-label"],
)
def test_every_rendered_manifest_is_valid_kubernetes(helm: Path, tmp_path: Path, extra: dict) -> None:
    manifests = helm_template(helm, _deep_merge(EXAMPLE, extra))
    assert {"ConfigMap", "Deployment", "Service"} <= {m["kind"] for m in manifests}
    validate_manifests(manifests, tmp_path)


def test_chart_deploys_the_code_location_instance_rbac_and_identity(helm: Path) -> None:
    manifests = helm_template(helm, EXAMPLE)
    kinds = _by_kind(manifests)
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Job", "Role", "RoleBinding", "Service", "ServiceAccount"]

    # the gRPC code server and its Service
    [deployment], [service] = kinds["Deployment"], kinds["Service"]
    pod = deployment["spec"]["template"]["spec"]
    [server] = pod["containers"]
    assert server["command"][:3] == ["dagster", "code-server", "start"]
    assert server["command"][server["command"].index("--module-name") + 1] == "data_assets.definitions"
    assert server["ports"] == [{"name": "grpc", "containerPort": 3030, "protocol": "TCP"}]
    assert service["metadata"]["name"] == "mmrecipe-code-server" and service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0] | {} == {
        "name": "grpc",
        "port": 3030,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "grpc",
    }
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert server["readinessProbe"]["exec"]["command"][:3] == ["dagster", "api", "grpc-health-check"]

    # the instance ConfigMap is dagster.prod.yaml with the overrides merged, and is valid Dagster config
    configmaps = {c["metadata"]["name"]: c for c in kinds["ConfigMap"]}
    instance = yaml.safe_load(configmaps["mmrecipe-instance"]["data"]["dagster.yaml"])
    assert instance == _deep_merge(yaml.safe_load(PROD_INSTANCE_YAML.read_text()), EXAMPLE["instance"]["overrides"])
    assert instance["concurrency"]["runs"]["max_concurrent_runs"] == 20
    assert instance["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert instance["run_launcher"]["class"] == "K8sRunLauncher"
    assert instance["compute_logs"]["class"] == "S3ComputeLogManager"
    assert instance["run_monitoring"]["enabled"] and instance["run_retries"]["enabled"]

    # the env ConfigMap says where things are; no secret is in a ConfigMap
    env = configmaps["mmrecipe-env"]["data"]
    assert env["MMRECIPE_LAKE"] == "s3://acme-mmrecipe/lake" and env["MMRECIPE_LANDING"] == "s3://acme-mmrecipe/landing"
    assert env["MMRECIPE_EXECUTOR"] == "k8s" and env["DAGSTER_K8S_INSTANCE_CONFIG_MAP"] == "mmrecipe-instance"
    assert env["DAGSTER_PG_HOST"] == EXAMPLE["postgresql"]["host"] and env["PGSSLMODE"] == "require"
    assert not [k for k in env if re.search(r"(PASSWORD|SECRET_ACCESS_KEY|SESSION_TOKEN)$", k)]

    # identity: IRSA annotation on the ServiceAccount every pod uses; RBAC to launch step Jobs
    [sa] = kinds["ServiceAccount"]
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == EXAMPLE["serviceAccount"]["roleArn"]
    [role], [binding] = kinds["Role"], kinds["RoleBinding"]
    verbs = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {"create", "get", "watch", "delete"} <= verbs[("batch", "jobs")]
    assert {"get", "list", "watch"} <= verbs[("", "pods")] and "get" in verbs[("", "pods/log")]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mmrecipe", "namespace": "data"}]

    # the code server hands run and step pods the same identity, env, /tmp and security contexts
    server_env = {e["name"]: e for e in server["env"]}
    context = json.loads(server_env["DAGSTER_CONTAINER_CONTEXT"]["value"])
    parsed = K8sContainerContext.create_from_config(context)
    pod_spec, container = parsed.run_k8s_config.pod_spec_config, parsed.run_k8s_config.container_config
    assert pod_spec["service_account_name"] == "mmrecipe" and pod_spec["security_context"]["run_as_non_root"] is True
    assert container["env_from"] == [{"config_map_ref": {"name": "mmrecipe-env"}}]
    assert container["security_context"]["read_only_root_filesystem"] is True
    assert container["volume_mounts"] == [{"name": "tmp", "mount_path": "/tmp"}]
    image = f"{EXAMPLE['image']['repository']}:{EXAMPLE['image']['tag']}"
    assert server_env["DAGSTER_CONTAINER_IMAGE"]["value"] == image == server["image"]

    # the pools hook sets the gpu limit after install and upgrade
    [hook] = kinds["Job"]
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    script = hook["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert 'dagster instance concurrency set "gpu" 2' in script

    # every container: non-root, read-only root filesystem, requests and limits, password from the Secret
    for name, spec in _pods(manifests):
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
        assert spec["serviceAccountName"] == "mmrecipe"
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) <= set(c["resources"]["limits"]), name
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], name
            pw = next(e for e in c["env"] if e["name"] == "DAGSTER_PG_PASSWORD")
            assert pw["valueFrom"]["secretKeyRef"] == {
                "name": "dagster-postgresql-secret",
                "key": "postgresql-password",
            }


def test_instance_configmap_loads_as_a_dagster_instance(
    helm: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_server: PostgresServer,
    s3_server: S3Server,
    in_cluster_service_account: Path,
) -> None:
    [cm] = [m for m in helm_template(helm, EXAMPLE) if m["metadata"]["name"] == "mmrecipe-instance"]
    (tmp_path / "dagster.yaml").write_text(cm["data"]["dagster.yaml"])
    [env_cm] = [m for m in helm_template(helm, EXAMPLE) if m["metadata"]["name"] == "mmrecipe-env"]
    for k, v in env_cm["data"].items():
        monkeypatch.setenv(k, v)
    # the cluster's database and bucket stand-ins: the ConfigMap names them only through these variables
    assert env_cm["data"]["PGSSLMODE"] == "require"
    monkeypatch.setenv("PGSSLMODE", "disable")  # the throwaway loopback server has no TLS
    for k, v in postgres_server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_BUCKET", s3_server.bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert f"@{postgres_server.host}:{postgres_server.port}/" in instance.run_storage.postgres_url
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1 and pools.pool_granularity.value == "op"
        assert instance.get_runs(limit=1) == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"image": {"repository": ""}}, "image.repository: set the registry path"),
        ({"lake": ""}, "lake: set the s3://bucket/prefix URI"),
        ({"landing": "/data/landing"}, 'landing="/data/landing": in the cluster it must be an s3://bucket/prefix URI'),
        ({"postgresql": {"host": ""}}, "postgresql.host: set the hostname"),
        ({"computeLogs": {"bucket": ""}}, "computeLogs.bucket: set the S3 bucket"),
        ({"serviceAccount": {"create": False, "name": ""}}, "serviceAccount.name: name the existing ServiceAccount"),
    ],
)
def test_missing_or_wrong_values_fail_with_what_to_set(helm: Path, override: dict, message: str) -> None:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        values = Path(tmp) / "values.yaml"
        values.write_text(yaml.safe_dump(_deep_merge(EXAMPLE, override)))
        out = subprocess.run(
            [str(helm), "template", "mmrecipe", str(HELM_DIR), "-f", str(values)],
            capture_output=True,
            text=True,
            env={"HOME": tmp, "PATH": "/usr/bin:/bin"},
        )
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_official_chart_values_agree_with_the_production_instance() -> None:
    """helm/dagster-values.yaml (Dagster's official chart) must configure the same instance."""
    official = yaml.safe_load((HELM_DIR / "dagster-values.yaml").read_text())
    prod = yaml.safe_load(PROD_INSTANCE_YAML.read_text())
    runs, pools = prod["concurrency"]["runs"], prod["concurrency"]["pools"]
    assert official["concurrency"]["enabled"] is True
    assert official["concurrency"]["runs"]["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert official["concurrency"]["runs"]["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert official["concurrency"]["pools"] == {
        "defaultLimit": pools["default_limit"],
        "granularity": pools["granularity"],
    }
    assert official["dagsterDaemon"]["runCoordinator"]["type"] == prod["run_coordinator"]["class"]
    monitoring = official["dagsterDaemon"]["runMonitoring"]
    camel = {re.sub(r"_(\w)", lambda m: m.group(1).upper(), k): v for k, v in prod["run_monitoring"].items()}
    assert monitoring == camel
    assert official["additionalInstanceConfig"]["run_retries"] == prod["run_retries"]
    assert official["runLauncher"]["type"] == prod["run_launcher"]["class"]
    logs = official["computeLogManager"]
    assert logs["type"] == prod["compute_logs"]["class"]
    s3_logs = logs["config"]["s3ComputeLogManager"]
    assert (s3_logs["bucket"], s3_logs["prefix"]) == (
        EXAMPLE["computeLogs"]["bucket"],
        EXAMPLE["computeLogs"]["prefix"],
    )
    assert official["postgresql"]["postgresqlHost"] == EXAMPLE["postgresql"]["host"]
    assert official["global"]["postgresqlSecretName"] == EXAMPLE["postgresql"]["secretName"]
    assert official["dagsterWebserver"]["workspace"]["servers"] == [
        {"host": "mmrecipe-code-server", "port": 3030, "name": "mmrecipe"}
    ]
    assert official["dagster-user-deployments"] == {"enabled": True, "enableSubchart": False}
