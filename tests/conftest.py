"""Shared fixtures: an isolated MMRECIPE_HOME, landing drops, and running stages on a real instance."""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mmrecipe.drops import MANIFEST, manifest_for_folder
from mmrecipe.settings import Settings
from resources.settings import environment_settings
from tests import scheduling

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DROPS = REPO / "samples" / "drops"
CLI = str(Path(sys.executable).with_name("mmrecipe"))
DEMO_ARGS = ["demo"]  # exactly what `make demo` runs (the `demo` eval preset: 2 seeds x 2 lrs x 8,192 tokens)


# Fixtures that start a real server or fetch a tool: a test using one is in the slow lane.
SERVER_FIXTURES = frozenset({"postgres_server", "s3_server", "s3_requests", "helm", "ui_server", "sample_demo"})


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark server tests slow, tag each test with its lane (fast: `make test-fast`) for .ci/lane_times.py, and
    order and group the files for xdist workers (tests/scheduling.py)."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        item.user_properties.append(("lane", "slow" if item.get_closest_marker("slow") else "fast"))
    scheduling.write_groups(config, scheduling.group_and_order(items))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """On the xdist controller: tells each worker where to write the groups of the files it collected."""
    node.workerinput[scheduling.GROUPS_FILE] = str(scheduling.groups_file(node.config))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> scheduling.FileGroupScheduling | None:
    """`--dist loadfile` (`make test`): whole files, and the files of each costly group as one unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    return scheduling.FileGroupScheduling(config, log, scheduling.groups_file(config))


def pytest_unconfigure(config: pytest.Config) -> None:
    scheduling.remove_groups_file(config)


def require_service(available: object, reason: str) -> None:
    """Skip a test whose server or tool is missing on this machine; in CI (`CI=true`) fail it instead.

    CI installs every service the suite uses (.ci/install-system.sh), so there a missing one is a broken
    install, not a reason to skip the tests that would catch a regression.
    """
    if available:
        return
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: a missing service fails the run instead of skipping)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a fresh, empty MMRECIPE_HOME under tmp_path (embedded default)."""
    home = tmp_path / "home"
    for var in ("MMRECIPE_LAKE", "MMRECIPE_LANDING", "MMRECIPE_S3_ENDPOINT_URL", "DAGSTER_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MMRECIPE_HOME", str(home))
    monkeypatch.setenv("MMRECIPE_TMP", str(tmp_path / "tmp"))
    s = environment_settings()
    for d in (s.lake, s.landing, s.dagster_home):
        os.makedirs(d, exist_ok=True)
    return s


@pytest.fixture
def instance(settings: Settings) -> Iterator[dg.DagsterInstance]:
    """An ephemeral-storage test instance with its home under the test's MMRECIPE_HOME."""
    with dg.instance_for_test(temp_dir=settings.dagster_home) as inst:
        yield inst


def land_drop(
    settings: Settings,
    drop: str,
    files: Mapping[str, bytes] | None = None,
    src: Path | None = None,
    manifest: bool = True,
) -> Path:
    """A drop folder in the landing root from in-memory files or a copy of `src`, with its manifest."""
    folder = Path(settings.landing) / drop
    if src is not None:
        shutil.copytree(src, folder, ignore=shutil.ignore_patterns(MANIFEST))
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    if manifest:
        (folder / MANIFEST).write_text(manifest_for_folder(str(folder), drop).to_json())
    return folder


def materialize_drop(
    settings: Settings,
    instance: dg.DagsterInstance,
    drop: str,
    assets: Sequence[str] = ("raw_crawl",),
    raise_on_error: bool = True,
    run_config: Mapping | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize the named drop-stage assets (and their checks) for one drop on `instance`."""
    from data_assets.definitions import build_defs

    if not instance.has_dynamic_partition("drops", drop):
        instance.add_dynamic_partitions("drops", [drop])
    job = build_defs(settings).resolve_job_def("drop_stages_job")
    return job.execute_in_process(
        instance=instance,
        partition_key=drop,
        asset_selection=[dg.AssetKey(a) for a in assets],
        raise_on_error=raise_on_error,
        run_config=run_config,
    )


def metadata_of(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    """The plain-value metadata of an asset's materialization in a result."""
    mat = result.asset_materializations_for_node(asset)[-1]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def run_checks(
    settings: Settings,
    instance: dg.DagsterInstance,
    partition: str,
    asset: str,
    check_names: Sequence[str] = ("conservation",),
) -> dg.ExecuteInProcessResult:
    """Run only the named checks of one asset partition (no materialization), e.g. after tampering."""
    from data_assets.definitions import build_defs

    defs = build_defs(settings)
    keys = [dg.AssetCheckKey(dg.AssetKey(asset), name) for name in check_names]
    job = next(
        j
        for j in defs.resolve_all_job_defs()
        if j.name in ("drop_stages_job", "recipe_stages_job")
        and dg.AssetKey(asset) in j.asset_layer.executable_asset_keys
    )
    ops = [c.node_def.name for c in defs.asset_checks if set(c.check_keys) & set(keys)]
    return job.execute_in_process(instance=instance, partition_key=partition, op_selection=ops, raise_on_error=False)


def run_sensor_requests(
    settings: Settings, instance: dg.DagsterInstance, sensor: dg.SensorDefinition
) -> dict[str, dg.ExecuteInProcessResult]:
    """Evaluate a lake sensor once and execute every run it requests (its target and checks), by partition."""
    from data_assets.definitions import build_defs
    from resources import LakeResource

    context = dg.build_sensor_context(instance=instance, resources={"lake": LakeResource(root=settings.lake)})
    job = build_defs(settings).resolve_job_def(sensor.job_name)
    results = {}
    for request in sensor(context).run_requests or []:
        result = job.execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags)
        assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
        results[request.partition_key] = result
    return results


def run_cli(args: Sequence[str], home: Path) -> subprocess.CompletedProcess[str]:
    """The installed `mmrecipe` console script run on `home` as MMRECIPE_HOME, with no other mmrecipe settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMRECIPE_", "DAGSTER_"))}
    env |= {"MMRECIPE_HOME": str(home), "MMRECIPE_TMP": str(home / "tmp")}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=1200)


@dataclass(frozen=True)
class SampleDemo:
    """The bundled sample drops run once through the whole graph by `mmrecipe demo`, for every test to read."""

    home: Path
    stdout: str

    @property
    def settings(self) -> Settings:
        return Settings.from_env({"MMRECIPE_HOME": str(self.home)})


@pytest.fixture(scope="session")
def sample_demo(tmp_path_factory: pytest.TempPathFactory) -> SampleDemo:
    """`mmrecipe demo` on the committed sample drops, once per test session (every stage, both recipes)."""
    home = tmp_path_factory.mktemp("sample-demo") / "home"
    demo = run_cli(DEMO_ARGS, home)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    return SampleDemo(home, demo.stdout)


@pytest.fixture
def sample_instance(sample_demo: SampleDemo) -> Iterator[dg.DagsterInstance]:
    """The persistent instance the sample demo ran on (read only)."""
    with dg.DagsterInstance.from_config(sample_demo.settings.dagster_home) as inst:
        yield inst


def last_run_events(instance: dg.DagsterInstance, job: str, partition: str | None = None) -> list[dg.EventLogEntry]:
    """Every event of the latest successful run of `job` (for `partition`) on the instance."""
    tags = {"dagster/partition": partition} if partition else {}
    runs = instance.get_run_records(dg.RunsFilter(job_name=job, tags=tags, statuses=[dg.DagsterRunStatus.SUCCESS]))
    assert runs, f"no successful {job} run for {partition}"
    return instance.all_logs(runs[0].dagster_run.run_id)


def materialization_metadata(events: Sequence[dg.EventLogEntry], asset: str) -> dict:
    """The plain-value metadata of an asset's last materialization among `events`."""
    mats = [e.asset_materialization for e in events if e.asset_materialization]
    mat = [m for m in mats if m.asset_key == dg.AssetKey(asset)][-1]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def check_evaluations(
    events: Sequence[dg.EventLogEntry], asset: str | None = None
) -> dict[str, dg.AssetCheckEvaluation]:
    """The check evaluations among `events` (of one asset, or all), by check name."""
    found = [e.dagster_event.event_specific_data for e in events if e.dagster_event
             and e.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]  # fmt: skip
    return {c.check_name: c for c in found if asset is None or c.asset_key == dg.AssetKey(asset)}
