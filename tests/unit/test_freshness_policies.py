"""Freshness policies: windows from the environment, applied to every asset, judged by Dagster's own daemon."""

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

# Judging freshness as the clock advances needs Dagster's freshness daemon run in-process under a frozen
# clock: no public API does either, so these private imports stay, for that one test only.
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.freshness import FreshnessDaemon

from data_assets.automation import apply_policies, freshness_policy
from mmrecipe.settings import REPO_ROOT, Settings
from resources.settings import environment_settings
from tests.conftest import land_drop, materialize_drop
from tests.warc_fixtures import HttpResponse, warc_bytes

WARC = {"crawl-0.warc.gz": warc_bytes([HttpResponse("http://example.org/", b"<html><p>hello</p></html>")])}
H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("env", "asset", "group", "fail", "warn"),
    [
        ({}, "raw_crawl", "drop_stages", 48 * H, 24 * H),
        ({}, "mixture", "recipe_stages", 168 * H, 84 * H),
        ({}, "leaderboard", "reports", 168 * H, 84 * H),
        ({"MMRECIPE_FRESHNESS_HOURS": "12"}, "raw_crawl", "drop_stages", 12 * H, 6 * H),
        ({"MMRECIPE_FRESHNESS_HOURS": "12", "MMRECIPE_FRESHNESS_RAW_CRAWL_HOURS": "2"}, "raw_crawl", None, 2 * H, H),
        ({"MMRECIPE_FRESHNESS_EXTRACTED_TEXT_HOURS": "3"}, "raw_crawl", "drop_stages", 48 * H, 24 * H),
        ({"MMRECIPE_FRESHNESS_WARN_FRACTION": "0.75"}, "raw_crawl", "drop_stages", 48 * H, 36 * H),
        ({"MMRECIPE_FRESHNESS_WARN_FRACTION": "0"}, "raw_crawl", "drop_stages", 48 * H, None),
        ({"MMRECIPE_FRESHNESS_RAW_CRAWL_HOURS": "0.02"}, "raw_crawl", "drop_stages", 0.02 * H, None),  # warn < 1 min
    ],
)
def test_freshness_windows_come_from_the_environment(
    env: dict[str, str], asset: str, group: str | None, fail: timedelta, warn: timedelta | None
) -> None:
    policy = freshness_policy(Settings.from_env(env).automation, asset, group)
    assert isinstance(policy, dg.FreshnessPolicy)
    assert policy.fail_window.to_timedelta() == fail
    assert (policy.warn_window.to_timedelta() if policy.warn_window else None) == warn


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MMRECIPE_FRESHNESS_HOURS": "soon"}, "MMRECIPE_FRESHNESS_HOURS='soon'"),
        ({"MMRECIPE_FRESHNESS_RAW_CRAWL_HOURS": "0"}, "MMRECIPE_FRESHNESS_RAW_CRAWL_HOURS='0'"),
        ({"MMRECIPE_FRESHNESS_RAW_CRAWL_HOURS": "nan"}, "expected a number"),
        ({"MMRECIPE_FRESHNESS_WARN_FRACTION": "1.5"}, "expected a number in [0, 1)"),
        ({"MMRECIPE_DROP_LAG_HOURS": "-1"}, "MMRECIPE_DROP_LAG_HOURS='-1'"),
    ],
)
def test_bad_freshness_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as err:
        Settings.from_env(env)
    assert message in str(err.value)


def test_a_freshness_variable_for_an_unknown_asset_is_an_error() -> None:
    from data_assets import raw_crawl

    settings = Settings.from_env({"MMRECIPE_FRESHNESS_RAW_CRAWLL_HOURS": "3"}).automation
    with pytest.raises(ValueError, match="MMRECIPE_FRESHNESS_RAW_CRAWLL_HOURS name no asset") as err:
        apply_policies(dg.load_assets_from_modules([raw_crawl]), settings)
    assert "raw_crawl" in str(err.value)


def test_every_asset_of_the_code_location_has_a_freshness_policy(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from data_assets.definitions import build_defs

    monkeypatch.setenv("MMRECIPE_FRESHNESS_RAW_CRAWL_HOURS", "5")
    graph = build_defs(environment_settings()).resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys())
    assert dg.AssetKey("raw_crawl") in keys
    for key in keys:
        policy = graph.get(key).freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy), f"{key.to_user_string()} has no freshness policy"
        assert policy.fail_window.to_timedelta() >= timedelta(hours=5)
    assert graph.get(dg.AssetKey("raw_crawl")).freshness_policy.fail_window.to_timedelta() == 5 * H


def _evaluate_freshness(instance: dg.DagsterInstance, module: Path, at: float) -> dict[str, str]:
    """Run one iteration of Dagster's freshness daemon at time `at` and read back the recorded states."""
    origin = LoadableTargetOrigin(python_file=str(module), attribute="defs", working_directory=str(REPO_ROOT))
    target = InProcessTestWorkspaceLoadTarget(InProcessCodeLocationOrigin(origin))
    with WorkspaceProcessContext(instance, target) as workspace, freeze_time(at):
        asyncio.run(FreshnessDaemon()._evaluate_assets(workspace_process_context=workspace))
    keys = [dg.AssetKey("raw_crawl"), dg.AssetKey("never_built")]
    records = instance.get_freshness_state_records(keys)
    return {k.to_user_string(): r.freshness_state.value for k, r in records.items()}


def test_freshness_passes_then_warns_then_fails_as_the_clock_advances(
    settings: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """raw_crawl with a 2 h window: PASS at +0.5 h, WARN at +1.2 h, FAIL at +2.5 h, PASS after a new materialization."""
    monkeypatch.setenv("MMRECIPE_FRESHNESS_RAW_CRAWL_HOURS", "2")
    module = tmp_path / "defs_under_test.py"
    module.write_text(
        "import dagster as dg\n"
        "from data_assets.definitions import build_defs\n"
        "from resources.settings import environment_settings\n"
        "base = build_defs(environment_settings())\n"
        "never_built = dg.AssetSpec('never_built', freshness_policy=dg.FreshnessPolicy.time_window(\n"
        "    fail_window=__import__('datetime').timedelta(hours=1)))\n"
        "defs = dg.Definitions.merge(base, dg.Definitions(assets=[never_built]))\n"
    )
    land_drop(settings, "d1", WARC)
    materialize_drop(settings, instance, "d1")
    built = time.time()
    assert _evaluate_freshness(instance, module, built + 0.5 * 3600) == {"raw_crawl": "PASS", "never_built": "UNKNOWN"}
    assert _evaluate_freshness(instance, module, built + 1.2 * 3600)["raw_crawl"] == "WARN"
    assert _evaluate_freshness(instance, module, built + 2.5 * 3600)["raw_crawl"] == "FAIL"
    materialize_drop(settings, instance, "d1")  # a fresh materialization makes it pass again
    assert _evaluate_freshness(instance, module, time.time() + 60)["raw_crawl"] == "PASS"
