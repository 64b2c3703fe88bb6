"""Shared fixtures: an isolated MMRECIPE_HOME, landing drops, and running stages on a real instance."""

import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import dagster as dg
import pytest

from mmrecipe.drops import MANIFEST, manifest_for_folder
from mmrecipe.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DROPS = REPO / "samples" / "drops"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a fresh, empty MMRECIPE_HOME under tmp_path (embedded default)."""
    home = tmp_path / "home"
    for var in ("MMRECIPE_LAKE", "MMRECIPE_LANDING", "MMRECIPE_S3_ENDPOINT_URL", "DAGSTER_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MMRECIPE_HOME", str(home))
    monkeypatch.setenv("MMRECIPE_TMP", str(tmp_path / "tmp"))
    s = Settings.from_env()
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
