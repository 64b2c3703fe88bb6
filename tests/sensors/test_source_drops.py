"""The source-drop sensor on a real test instance: new, incomplete, repeated and badly named drops."""

import json
import shutil

import dagster as dg
import pytest

from mmrecipe.settings import Settings
from resources import build_resources
from sensors.source_drops import source_drops
from tests.conftest import land_drop
from tests.warc_fixtures import HttpResponse, warc_bytes

WARC = {"crawl-0.warc.gz": warc_bytes([HttpResponse("http://example.org/", b"<html><p>hello</p></html>")])}


def _tick(instance: dg.DagsterInstance, settings: Settings, cursor: str | None = None) -> dg.SensorResult:
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=build_resources(settings))
    return source_drops(ctx)


def test_new_complete_drop_is_registered_and_run_once(settings: Settings, instance: dg.DagsterInstance) -> None:
    land_drop(settings, "drop-001", WARC)
    first = _tick(instance, settings)
    assert [r.partition_key for r in first.run_requests] == ["drop-001"]
    assert first.run_requests[0].run_key.startswith("drop-001:")
    assert [list(r.partition_keys) for r in first.dynamic_partitions_requests] == [["drop-001"]]
    assert json.loads(first.cursor) == {"v": 2, "after": "drop-001", "pending": {}, "since_full": 0}
    # a re-tick with the stored cursor asks for nothing new (the cursor is what survives restarts)
    again = _tick(instance, settings, cursor=first.cursor)
    assert again.run_requests == [] and again.dynamic_partitions_requests == []


def test_incomplete_drops_are_not_started(settings: Settings, instance: dg.DagsterInstance) -> None:
    land_drop(settings, "no-manifest", WARC, manifest=False)
    folder = land_drop(settings, "half-uploaded", WARC)
    (folder / "crawl-0.warc.gz").write_bytes(WARC["crawl-0.warc.gz"][:100])  # upload still in progress
    folder = land_drop(settings, "missing-file", WARC)
    (folder / "crawl-0.warc.gz").unlink()
    result = _tick(instance, settings)
    assert result.run_requests == []
    assert set(json.loads(result.cursor)["pending"]) == {"no-manifest", "half-uploaded", "missing-file"}
    # once the upload completes, the next tick starts it
    shutil.rmtree(folder)
    land_drop(settings, "missing-file", WARC)
    later = _tick(instance, settings, cursor=result.cursor)
    assert [r.partition_key for r in later.run_requests] == ["missing-file"]


def test_bad_drop_names_are_reported_not_started(settings: Settings, instance: dg.DagsterInstance) -> None:
    for name in ("bad name", "caf\u00e9", "ok-drop"):
        land_drop(settings, name, WARC)
    result = _tick(instance, settings)
    assert [r.partition_key for r in result.run_requests] == ["ok-drop"]
    assert not instance.has_dynamic_partition("drops", "bad name")


def test_sensor_targets_every_drop_stage(settings: Settings) -> None:
    from data_assets.definitions import build_defs

    defs = build_defs(settings)
    sensor = defs.resolve_sensor_def("source_drops")
    job = defs.resolve_job_def(sensor.job_name)
    stage_keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert "raw_crawl" in stage_keys
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_cold_start_indexes_only_until_a_classifier_exists(settings: Settings, instance: dg.DagsterInstance) -> None:
    land_drop(settings, "drop-001", WARC)
    cold = _tick(instance, settings)
    assert [r.asset_selection for r in cold.run_requests] == [[dg.AssetKey("raw_crawl")]]
    instance.report_runless_asset_event(dg.AssetMaterialization("quality_classifier"))
    land_drop(settings, "drop-002", WARC)
    warm = _tick(instance, settings, cursor=cold.cursor)
    assert [(r.partition_key, r.asset_selection) for r in warm.run_requests] == [("drop-002", None)]


def test_a_tick_reads_no_file_contents_and_raw_crawl_checks_the_hashes(
    settings: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Completeness is presence and sizes; a same-size corrupted upload is started, and raw_crawl refuses it."""
    from data_assets.definitions import build_defs
    from mmrecipe import drops

    folder = land_drop(settings, "drop-corrupt", WARC)
    data = bytearray((folder / "crawl-0.warc.gz").read_bytes())
    data[-5] ^= 0xFF  # same size, different bytes
    (folder / "crawl-0.warc.gz").write_bytes(bytes(data))

    def no_hashing(*_: object) -> str:
        raise AssertionError("a sensor tick must not hash drop files")

    with monkeypatch.context() as m:
        m.setattr(drops, "sha256_of", no_hashing)
        result = _tick(instance, settings)
    assert [r.partition_key for r in result.run_requests] == ["drop-corrupt"]
    instance.add_dynamic_partitions("drops", ["drop-corrupt"])
    job = build_defs(settings).get_job_def("drop_stages_job")
    with pytest.raises(dg.Failure, match=r"crawl-0\.warc\.gz sha256 does not match the manifest"):
        job.execute_in_process(
            instance=instance, partition_key="drop-corrupt", asset_selection=[dg.AssetKey("raw_crawl")]
        )
