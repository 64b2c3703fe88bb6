"""The drop-lag check: a drop that landed but is not processed within N hours fails, with a controllable clock."""

import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from data_assets.automation import DROP_LAG_CHECK, AutomationSettings, drop_lag_sensor
from mmrecipe.drop_lag import DropLag, drop_lags, landed_drops
from mmrecipe.drops import MANIFEST
from mmrecipe.settings import Settings
from resources import build_resources
from tests.conftest import land_drop, materialize_drop, run_checks
from tests.production.prod_support import S3Server, s3_server  # noqa: F401 - the moto S3 fixture
from tests.warc_fixtures import HttpResponse, warc_bytes

WARC = {"crawl-0.warc.gz": warc_bytes([HttpResponse("http://example.org/", b"<html><p>hello</p></html>")])}
RAW = dg.AssetKey("raw_crawl")
STAGES = ["extracted_text", "raw_crawl"]
HOUR = 3600.0
CHECK_KEY = dg.AssetCheckKey(RAW, DROP_LAG_CHECK)


@pytest.mark.parametrize(
    ("landed_h", "materialized_h", "now_h", "expected_status", "expected_missing"),
    [
        (0, {}, 1, "waiting", ("extracted_text", "raw_crawl")),  # landed 1 h ago, nothing yet
        (0, {}, 6, "lagging", ("extracted_text", "raw_crawl")),  # exactly N hours: late
        (0, {"raw_crawl": 0.1}, 7, "lagging", ("extracted_text",)),  # half processed, late
        (0, {"raw_crawl": 0.1}, 2, "waiting", ("extracted_text",)),
        (0, {"raw_crawl": 0.1, "extracted_text": 0.2}, 100, "processed", ()),
        (5, {"raw_crawl": 0.1, "extracted_text": 0.2}, 12, "lagging", ("extracted_text", "raw_crawl")),  # re-landed
        (5, {"raw_crawl": 5.5, "extracted_text": 5.6}, 12, "processed", ()),
    ],
)
def test_drop_status_from_landing_and_materialization_times(
    landed_h: float, materialized_h: dict[str, float], now_h: float, expected_status: str, expected_missing: tuple
) -> None:
    def materialized_at(stage: str, drop: str) -> float | None:
        assert drop == "d1"
        hours = materialized_h.get(stage)
        return None if hours is None else hours * HOUR

    (lag,) = drop_lags({"d1": landed_h * HOUR}, materialized_at, STAGES, 6 * HOUR, now_h * HOUR)
    assert lag == DropLag("d1", landed_h * HOUR, tuple(sorted(expected_missing)), expected_status)


def test_a_drop_with_an_invalid_name_is_reported_once_late() -> None:
    lags = drop_lags({"bad name": 0.0}, lambda s, d: None, ["raw_crawl"], 6 * HOUR, 7 * HOUR)
    assert [(g.drop, g.status, g.missing) for g in lags] == [("bad name", "invalid_name", ("raw_crawl",))]
    assert drop_lags({"bad name": 0.0}, lambda s, d: None, ["raw_crawl"], 6 * HOUR, 1 * HOUR)[0].status == "waiting"


def _land_at(settings: Settings, drop: str, at: float) -> None:
    """Land a drop whose manifest was written at epoch `at` (the landing time the check reads)."""
    folder = land_drop(settings, drop, WARC)
    os.utime(folder / MANIFEST, (at, at))


def _tick(instance: dg.DagsterInstance, settings: Settings, now: float, cursor: str | None = None) -> dg.SensorResult:
    sensor = drop_lag_sensor([RAW], AutomationSettings(drop_lag_hours=6), clock=lambda: now)
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=build_resources(settings))
    return sensor(ctx)


def _evaluation(result: dg.SensorResult) -> dg.AssetCheckEvaluation:
    (event,) = result.asset_events
    assert isinstance(event, dg.AssetCheckEvaluation)
    assert (event.asset_key, event.check_name) == (RAW, DROP_LAG_CHECK)
    return event


def test_sensor_fails_the_check_once_a_drop_waits_too_long_and_passes_after_processing(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    landed = time.time() - 600  # landed 10 min ago; the sensor's clock is moved relative to it
    _land_at(settings, "d1", landed)

    early = _tick(instance, settings, landed + 1 * HOUR)
    ev = _evaluation(early)
    assert ev.passed
    assert ev.metadata["drops_waiting"].value == 1 and ev.metadata["late_drops"].value == "none"

    # the unchanged verdict is not re-reported on the next tick
    assert _tick(instance, settings, landed + 1.5 * HOUR, cursor=early.cursor).asset_events == []

    late = _tick(instance, settings, landed + 7 * HOUR, cursor=early.cursor)
    ev = _evaluation(late)
    assert not ev.passed
    assert ev.metadata["drops_lagging"].value == 1 and ev.metadata["late_drops"].value == "d1"
    assert "d1 (lagging; missing raw_crawl)" in ev.description and "drop_stages_job" in ev.description
    assert "| d1 | lagging |" in ev.metadata["drops"].value

    # the daemon stores sensor asset events as runless events: the failed check is what the UI shows
    instance.report_runless_asset_event(ev)
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([CHECK_KEY])[CHECK_KEY]
    assert record.status.value == "FAILED"

    materialize_drop(settings, instance, "d1")  # processing the drop (at the real now, after `landed`)
    processed = _evaluation(_tick(instance, settings, landed + 8 * HOUR, cursor=late.cursor))
    assert processed.passed and processed.metadata["drops_processed"].value == 1


def test_a_drop_landed_again_after_processing_lags_again(settings: Settings, instance: dg.DagsterInstance) -> None:
    _land_at(settings, "d1", 1_000_000_000.0)  # long ago
    materialize_drop(settings, instance, "d1")
    now = time.time() + 10 * HOUR
    assert _evaluation(_tick(instance, settings, now)).passed
    # the manifest is rewritten (a new upload of the drop) after its materialization
    relanded = now - 7 * HOUR
    os.utime(Path(settings.landing) / "d1" / MANIFEST, (relanded, relanded))
    ev = _evaluation(_tick(instance, settings, now))
    assert not ev.passed and ev.metadata["late_drops"].value == "d1"


def test_an_unregistered_badly_named_drop_fails_the_check(settings: Settings, instance: dg.DagsterInstance) -> None:
    landed = time.time() - 600
    _land_at(settings, "bad name", landed)
    _land_at(settings, "good", landed)
    (Path(settings.landing) / "no-manifest-yet").mkdir()
    ev = _evaluation(_tick(instance, settings, landed + 7 * HOUR))
    assert not ev.passed
    assert ev.metadata["drops_landed"].value == 2  # the folder without a manifest has not landed
    assert ev.metadata["late_drops"].value == "bad name, good"
    assert "bad name (invalid_name" in ev.description


def test_the_cursor_re_reports_an_unchanged_verdict_hourly(settings: Settings, instance: dg.DagsterInstance) -> None:
    landed = time.time() - 600
    _land_at(settings, "d1", landed)
    first = _tick(instance, settings, landed + 7 * HOUR)
    assert json.loads(first.cursor)["at"] == landed + 7 * HOUR
    assert _tick(instance, settings, landed + 7.5 * HOUR, cursor=first.cursor).asset_events == []
    assert not _evaluation(_tick(instance, settings, landed + 8.1 * HOUR, cursor=first.cursor)).passed


def test_the_check_executed_in_a_run_fails_for_a_drop_landed_hours_ago(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    """The same check run on demand (the UI's "Execute" button): real clock, manifest written 7 h ago."""
    _land_at(settings, "old-drop", time.time() - 7 * HOUR)
    _land_at(settings, "new-drop", time.time() - 0.5 * HOUR)
    instance.add_dynamic_partitions("drops", ["old-drop", "new-drop"])
    result = run_checks(settings, instance, "old-drop", "raw_crawl", check_names=(DROP_LAG_CHECK,))
    (ev,) = result.get_asset_check_evaluations()
    assert not ev.passed
    assert ev.metadata["late_drops"].value == "old-drop"
    assert ev.metadata["drops_waiting"].value == 1


def test_the_code_location_checks_every_drop_stage(settings: Settings) -> None:
    from data_assets.automation import drop_stage_keys
    from data_assets.definitions import build_defs

    defs = build_defs(settings)
    stages = drop_stage_keys(defs.assets)
    assert RAW in stages
    spec = defs.resolve_asset_graph().get_check_spec(CHECK_KEY)
    assert not spec.blocking
    for key in stages:
        assert key.to_user_string() in spec.description
    sensor = defs.resolve_sensor_def("drop_lag")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_landing_times_are_read_from_an_s3_landing_root(s3_server: S3Server) -> None:  # noqa: F811
    """The same listing on S3 (moto's real HTTP API): manifest LastModified is the landing time."""
    from mmrecipe.storage import Storage

    client = s3_server.client()
    for key in ("landing/d1/crawl-0.warc.gz", "landing/d1/_MANIFEST.json", "landing/partial/crawl-0.warc.gz"):
        client.put_object(Bucket=s3_server.bucket, Key=key, Body=b"x")
    before = time.time()
    landed = landed_drops(Storage(f"s3://{s3_server.bucket}/landing", endpoint_url=s3_server.endpoint_url))
    assert list(landed) == ["d1"]  # "partial" has no manifest yet: it has not landed
    assert before - 120 < landed["d1"] <= before + 5
