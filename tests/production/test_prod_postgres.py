"""The production instance config on a real throwaway Postgres: a materialization and what it stores.

The instance is helm/dagster.prod.yaml itself, unchanged: Postgres storage with the password from
the environment, the queued run coordinator, pools, run monitoring and retries, and compute logs
in S3 (moto here). The sample drop's raw_crawl runs on it; a second instance opened from the same
config then reads the run, the events, the partitions, the pool limit and the sensor state back.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from mmrecipe.settings import REPO_ROOT, Settings
from sensors.source_drops import source_drops
from tests.conftest import SAMPLE_DROPS, land_drop
from tests.production.prod_support import PROD_INSTANCE_YAML, PostgresServer, S3Server

pytestmark = pytest.mark.slow  # real servers and tools: Postgres, moto S3, helm


@pytest.fixture(autouse=True)
def _in_a_pod(in_cluster_service_account: Path) -> None:
    """Every test here runs as if inside a pod, where the K8sRunLauncher finds its ServiceAccount."""


def _prod_home(tmp_path: Path, pg: PostgresServer, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROD_INSTANCE_YAML, home / "dagster.yaml")
    env = pg.env() | {
        "DAGSTER_HOME": str(home),
        "DAGSTER_COMPUTE_LOGS_BUCKET": s3.bucket,
        "DAGSTER_COMPUTE_LOGS_PREFIX": "compute-logs",
        "AWS_ENDPOINT_URL": s3.endpoint_url,
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "mmrecipe-instance",
        "DAGSTER_K8S_NAMESPACE": "data",
        "DAGSTER_K8S_SERVICE_ACCOUNT": "mmrecipe",
        "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return home


# Every process the `dagster` command starts (it spawns a code server) sees the test's ServiceAccount files,
# as a pod would: a sitecustomize on PYTHONPATH points kubernetes' in-cluster loader at them.
SITECUSTOMIZE = """import os
if os.environ.get("MMRECIPE_TEST_SA_DIR"):
    import kubernetes.config.incluster_config as c
    c.SERVICE_TOKEN_FILENAME = os.path.join(os.environ["MMRECIPE_TEST_SA_DIR"], "token")
    c.SERVICE_CERT_FILENAME = os.path.join(os.environ["MMRECIPE_TEST_SA_DIR"], "ca.crt")
"""


def dagster_cli(sa: Path, *args: str) -> str:
    """Run the `dagster` command (as an operator or the chart's hooks would) on the environment's instance."""
    (sa / "site").mkdir(exist_ok=True)
    (sa / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join([str(sa / "site"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    env = os.environ | {"MMRECIPE_TEST_SA_DIR": str(sa), "PYTHONPATH": path}
    exe = str(Path(sys.executable).with_name("dagster"))
    done = subprocess.run([exe, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"dagster {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


def test_prod_instance_config_has_the_production_services(
    tmp_path: Path, postgres_server: PostgresServer, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    home = _prod_home(tmp_path, postgres_server, s3_server, monkeypatch)
    assert Path(home, "dagster.yaml").is_file()
    with dg.DagsterInstance.get() as instance:  # from $DAGSTER_HOME, as every prod process opens it
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        assert (launcher.instance_config_map, launcher.job_namespace) == ("mmrecipe-instance", "data")
        assert (launcher.service_account_name, launcher.postgres_password_secret) == (
            "mmrecipe",
            "dagster-postgresql-secret",
        )
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 2
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 10
        # the password comes from the environment (the server enforces it: see below)
        assert f":{postgres_server.password}@" in instance.run_storage.postgres_url
        assert instance.get_runs(limit=1) == []
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host=postgres_server.host,
            port=postgres_server.port,
            user="postgres",
            password="wrong",
            dbname=postgres_server.db,
        )


def test_sample_drop_materializes_on_postgres_and_round_trips(
    tmp_path: Path,
    settings: Settings,
    postgres_server: PostgresServer,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    in_cluster_service_account: Path,
) -> None:
    from data_assets.definitions import build_defs
    from data_assets.quarantine import latest_evaluations
    from resources import build_resources

    _prod_home(tmp_path, postgres_server, s3_server, monkeypatch)
    land_drop(settings, "sample-a", src=SAMPLE_DROPS / "sample-a")
    with dg.DagsterInstance.get() as instance:
        # the sensor registers the drop (dynamic partitions live in Postgres too)
        tick = source_drops(dg.build_sensor_context(instance=instance, resources=build_resources(settings)))
        assert [r.partition_key for r in tick.run_requests] == ["sample-a"]
        instance.add_dynamic_partitions("drops", ["sample-a"])
        job = build_defs(settings).resolve_job_def("drop_stages_job")
        result = job.execute_in_process(
            instance=instance, partition_key="sample-a", asset_selection=[dg.AssetKey("raw_crawl")]
        )
        assert result.success
        run_id = result.run_id
        mat = result.asset_materializations_for_node("raw_crawl")[-1]
        rows = mat.metadata["dagster/row_count"].value

    # schedule storage: the sensor switched on and its cursor set, with the commands an operator uses;
    # the gpu pool limit, set with the command the chart's post-install hook runs
    location = ["-m", "data_assets.definitions"]
    dagster_cli(in_cluster_service_account, "sensor", "cursor", "source_drops", "--set", tick.cursor or "", *location)
    dagster_cli(in_cluster_service_account, "sensor", "start", "source_drops", *location)
    dagster_cli(in_cluster_service_account, "instance", "concurrency", "set", "gpu", "2")

    # a fresh instance from the same config reads everything back from Postgres
    with dg.DagsterInstance.get() as again:
        run = again.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == "sample-a"
        event = again.get_latest_materialization_event(dg.AssetKey("raw_crawl"))
        assert event is not None and event.run_id == run_id
        stored = event.asset_materialization
        assert stored.partition == "sample-a" and stored.metadata["dagster/row_count"].value == rows > 0
        (check,) = latest_evaluations(again, {"raw_crawl": ["conservation"]}, ["sample-a"]).values()
        assert check.run_id == run_id and check.passed
        assert again.get_dynamic_partitions("drops") == ["sample-a"]
    assert '"gpu": 0 / 2 slots' in dagster_cli(in_cluster_service_account, "instance", "concurrency", "get", "gpu")
    # the rows are in Postgres itself, and the step's compute logs in the S3 bucket
    conn = psycopg2.connect(
        host=postgres_server.host,
        port=postgres_server.port,
        user=postgres_server.user,
        password=postgres_server.password,
        dbname=postgres_server.db,
    )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT status, instigator_body FROM instigators WHERE instigator_type = 'SENSOR'")
        ((status, body),) = cur.fetchall()
        state = json.loads(body)
        assert status == "RUNNING" and state["origin"]["job_name"] == "source_drops"
        assert state["job_specific_data"]["cursor"] == tick.cursor
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cur.fetchall() == [("SUCCESS",)]
        cur.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (run_id,),
        )
        assert cur.fetchone() == (1,)
    conn.close()
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_server.bucket).get("Contents", [])]
    assert any(k.startswith(f"compute-logs/storage/{run_id}/") for k in keys), keys
