"""Declarative automation and observability, checked over the whole code location (so later stages are covered)."""

import dagster as dg
import pytest

from data_assets.automation import DEFAULT_OWNERS, AutomationSettings, drop_stage_keys, with_policies
from mmrecipe.settings import Settings
from tests.conftest import land_drop, materialize_drop
from tests.warc_fixtures import HttpResponse, warc_bytes

WARC = {"crawl-0.warc.gz": warc_bytes([HttpResponse("http://example.org/", b"<html><p>hello</p></html>")])}
RAW = dg.AssetKey("raw_crawl")


@pytest.fixture
def defs(settings: Settings) -> dg.Definitions:
    from data_assets.definitions import build_defs

    return build_defs(settings)


def _labels(condition: dg.AutomationCondition | None) -> set[str]:
    """Every label in a condition tree (eager, all_deps_blocking_checks_passed, …)."""
    if condition is None:
        return set()
    found = {condition.get_label()} if condition.get_label() else set()
    for child in condition.children:
        found |= _labels(child)
    return found


def test_drop_stages_downstream_of_raw_crawl_follow_it_eagerly(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    stages = drop_stage_keys(defs.assets)
    downstream = [k for k in stages if k != RAW]
    assert graph.get(RAW).automation_condition is None  # raw_crawl is started by the source_drops sensor
    for key in downstream:
        assert "eager" in _labels(graph.get(key).automation_condition), f"{key.to_user_string()} is not eager"


def test_release_waits_for_every_upstream_blocking_check(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    release = dg.AssetKey("release")
    assert "all_deps_blocking_checks_passed" in _labels(graph.get(release).automation_condition)


def test_the_automation_sensor_is_on_by_default_and_targets_every_asset(defs: dg.Definitions) -> None:
    sensor = defs.resolve_sensor_def("automation")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    graph = defs.resolve_asset_graph()
    targeted = sensor.asset_selection.resolve(graph)
    conditioned = {k for k in graph.get_all_asset_keys() if graph.get(k).automation_condition is not None}
    assert conditioned <= targeted


def test_a_stage_module_s_own_condition_and_owners_win() -> None:
    own = dg.AutomationCondition.on_missing()
    spec = dg.AssetSpec("x", deps=[RAW], automation_condition=own, owners=["alice@example.org"])
    out = with_policies(spec, AutomationSettings())
    assert out.automation_condition is own and out.owners == ["alice@example.org"]
    bare = with_policies(dg.AssetSpec("y"), AutomationSettings())
    assert bare.automation_condition is None and bare.owners == DEFAULT_OWNERS  # not drop-partitioned: no eager


@pytest.mark.slow  # every drop stage of a drop
def test_eager_requests_the_downstream_stages_of_a_drop_once_raw_crawl_materialized(
    settings: Settings, instance: dg.DagsterInstance, defs: dg.Definitions
) -> None:
    graph = defs.resolve_asset_graph()
    downstream = [k for k in drop_stage_keys(defs.assets) if k != RAW]
    ready = {k for k in downstream if graph.get(k).parent_keys == {RAW}}  # everything else waits for its parents
    assert ready, "some drop stage should read raw_crawl alone"
    land_drop(settings, "d1", WARC)
    instance.add_dynamic_partitions("drops", ["d1"])
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    # raw_crawl[d1] is missing: no drop stage may start
    assert {k for k in downstream if first.get_requested_partitions(k)} == set()
    materialize_drop(settings, instance, "d1")
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    requested = {k for k in downstream if second.get_requested_partitions(k) == {"d1"}}
    assert requested == ready
    assert second.get_requested_partitions(RAW) == set()
    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
    assert {k for k in ready if third.get_requested_partitions(k)} == set()  # requested once, not on every tick


def test_every_asset_is_observable_in_the_ui(defs: dg.Definitions) -> None:
    """Description (docstring's first line), owner, group, kinds, and a column schema on every tabular asset."""
    graph = defs.resolve_asset_graph()
    gaps = []
    for key in sorted(graph.materializable_asset_keys):  # not upstream keys another module merely refers to
        node, name = graph.get(key), key.to_user_string()
        if not (node.description or "").strip() or len(node.description.strip().splitlines()[0]) < 10:
            gaps.append(f"{name}: no description (first docstring line)")
        if not node.owners:
            gaps.append(f"{name}: no owner")
        if not node.group_name or node.group_name == "default":
            gaps.append(f"{name}: no group")
        if not node.kinds:
            gaps.append(f"{name}: no kinds")
        schema = node.metadata.get("dagster/column_schema")
        tabular = "parquet" in {k.lower() for k in node.kinds}  # a model file (e.g. fasttext) has no columns
        if tabular and (not isinstance(schema, dg.TableSchema) or not schema.columns):
            gaps.append(f"{name}: writes Parquet but has no dagster/column_schema definition metadata")
    assert not gaps, "assets missing UI essentials:\n" + "\n".join(gaps)
