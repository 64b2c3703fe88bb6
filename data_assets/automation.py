"""How the graph keeps itself current: freshness policies, eager automation and the drop-lag check.

Everything here is applied centrally by `build_defs`, so stage modules stay free of policy:
- a `FreshnessPolicy.time_window` on every asset, windows from the settings (`Settings.automation`);
- `AutomationCondition.eager()` on every drop-partitioned asset downstream of another (they follow raw_crawl);
- the `automation` sensor (on by default) that evaluates every automation condition, e.g. release's
  "all upstream blocking checks passed";
- `raw_crawl.drops_processed_in_time`: fails while a drop that landed (manifest present) more than
  `MMRECIPE_DROP_LAG_HOURS` ago is not yet materialized by every drop stage. The `drop_lag` sensor
  evaluates it without a run; it can also be executed from the UI.
"""

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg

from data_assets.jobs import DROP_STAGES, RECIPE_STAGES, STEP_RETRY_POLICY
from mmrecipe.drop_lag import drop_lags, lag_verdict, landed_drops
from mmrecipe.settings import AutomationSettings
from mmrecipe.storage import Storage
from partitions import drops_partitions
from resources import LandingResource

DEFAULT_OWNERS = ["team:data-platform"]
DEFAULT_FAIL_HOURS = {DROP_STAGES: 48.0, RECIPE_STAGES: 168.0}
FALLBACK_FAIL_HOURS = 168.0
DROP_LAG_CHECK = "drops_processed_in_time"
LAG_RESEND_SECONDS = 3600  # re-report an unchanged lag result at most hourly (its ages move on)


def fail_hours(settings: AutomationSettings, asset: str, group: str | None) -> float:
    """The fail window of one asset: its own variable, else the global one, else its group's default."""
    if asset in settings.asset_hours:
        return settings.asset_hours[asset]
    return settings.default_hours or DEFAULT_FAIL_HOURS.get(group or "", FALLBACK_FAIL_HOURS)


def freshness_policy(settings: AutomationSettings, asset: str, group: str | None) -> dg.FreshnessPolicy:
    """A time-window policy: FAIL when no partition materialized within the window, WARN past its fraction."""
    fail = timedelta(hours=fail_hours(settings, asset, group))
    warn = fail * settings.warn_fraction
    return dg.FreshnessPolicy.time_window(fail, warn if warn >= timedelta(minutes=1) else None)


def _is_drop_partitioned(spec: dg.AssetSpec) -> bool:
    return getattr(spec.partitions_def, "name", None) == drops_partitions.name


def with_policies(spec: dg.AssetSpec, settings: AutomationSettings) -> dg.AssetSpec:
    """An asset spec with its freshness policy, eager automation (drop stages downstream) and an owner.

    What a stage module sets itself (a policy, a condition, owners) wins over these defaults.
    """
    name = spec.key.to_user_string()
    condition = spec.automation_condition
    if condition is None and _is_drop_partitioned(spec) and spec.deps:
        condition = dg.AutomationCondition.eager()
    return spec.replace_attributes(
        freshness_policy=spec.freshness_policy or freshness_policy(settings, name, spec.group_name),
        automation_condition=condition,
        owners=list(spec.owners) or DEFAULT_OWNERS,
    )


def apply_policies(assets: Sequence[object], settings: AutomationSettings) -> list[object]:
    """The assets with `with_policies` applied to every spec; raises if a freshness variable names no asset."""
    names = {k.to_user_string() for a in assets if isinstance(a, dg.AssetsDefinition) for k in a.keys}
    typos = sorted(set(settings.asset_hours) - names)
    if typos:
        variables = ", ".join(f"MMRECIPE_FRESHNESS_{t.upper()}_HOURS" for t in typos)
        raise ValueError(f"{variables} name no asset; assets are {sorted(names)}. Fix the variable name or unset it.")
    return [
        a.map_asset_specs(lambda s: with_policies(s, settings)) if isinstance(a, dg.AssetsDefinition) else a
        for a in assets
    ]


def drop_stage_keys(assets: Sequence[object]) -> list[dg.AssetKey]:
    """The assets partitioned by drop: a drop is processed once every one of them materialized it."""
    return sorted(
        s.key for a in assets if isinstance(a, dg.AssetsDefinition) for s in a.specs if _is_drop_partitioned(s)
    )


def latest_materialization(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> float | None:
    """When `key` last materialized `partition` (epoch s), or None."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), 1)
    return records.records[0].timestamp if records.records else None


def evaluate_drop_lag(
    instance: dg.DagsterInstance, landing: Storage, stage_keys: Sequence[dg.AssetKey], max_lag_hours: float, now: float
) -> tuple[bool, str, dict[str, object]]:
    """The drop-lag verdict for the drops in `landing` against the materializations recorded in `instance`."""
    lags = drop_lags(
        landed_drops(landing),
        lambda stage, drop: latest_materialization(instance, dg.AssetKey(stage), drop),
        [k.to_user_string() for k in stage_keys],
        max_lag_hours * 3600,
        now,
    )
    passed, description, metadata = lag_verdict(lags, max_lag_hours, now)
    return passed, description, {**metadata, "drops": dg.MetadataValue.md(str(metadata["drops"]))}


def drop_lag_check(stage_keys: Sequence[dg.AssetKey], max_lag_hours: float) -> dg.AssetChecksDefinition:
    """The `raw_crawl.drops_processed_in_time` check, executable on demand (the drop_lag sensor reports it too)."""

    @dg.asset_check(
        retry_policy=STEP_RETRY_POLICY,
        asset="raw_crawl",
        name=DROP_LAG_CHECK,
        blocking=False,
        description=f"Every drop whose manifest landed more than {max_lag_hours:g} h ago is materialized by "
        f"every drop stage ({', '.join(k.to_user_string() for k in stage_keys)}).",
    )
    def drops_processed_in_time(
        context: dg.AssetCheckExecutionContext, landing: LandingResource
    ) -> dg.AssetCheckResult:
        passed, description, metadata = evaluate_drop_lag(
            context.instance, landing.storage(), stage_keys, max_lag_hours, time.time()
        )
        return dg.AssetCheckResult(passed=passed, description=description, metadata=metadata)

    return drops_processed_in_time


def drop_lag_sensor(
    stage_keys: Sequence[dg.AssetKey], settings: AutomationSettings, clock: Callable[[], float] = time.time
) -> dg.SensorDefinition:
    """A sensor that evaluates the drop-lag check without a run, reporting when the verdict changes (or hourly)."""

    @dg.sensor(
        name="drop_lag",
        minimum_interval_seconds=settings.drop_lag_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Reports raw_crawl.{DROP_LAG_CHECK}: fails while a landed drop waits more than "
        f"{settings.drop_lag_hours:g} h to be processed by every drop stage.",
    )
    def drop_lag(context: dg.SensorEvaluationContext, landing: LandingResource) -> dg.SensorResult:
        now = clock()
        passed, description, metadata = evaluate_drop_lag(
            context.instance, landing.storage(), stage_keys, settings.drop_lag_hours, now
        )
        state = hashlib.sha256(f"{passed}|{metadata['late_drops']}|{metadata['drops_landed']}".encode()).hexdigest()
        previous = json.loads(context.cursor) if context.cursor else {}
        if previous.get("state") == state and now - previous.get("at", 0) < LAG_RESEND_SECONDS:
            return dg.SensorResult(skip_reason=f"unchanged: {description}")
        evaluation = dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("raw_crawl"),
            check_name=DROP_LAG_CHECK,
            passed=passed,
            description=description,
            metadata=metadata,
        )
        verdict = "passed" if passed else "FAILED"
        return dg.SensorResult(
            asset_events=[evaluation],
            cursor=json.dumps({"state": state, "at": now}),
            skip_reason=f"reported raw_crawl.{DROP_LAG_CHECK}: {verdict}: {description}"[:500],
        )

    return drop_lag


@dataclass(frozen=True)
class Automation:
    """What `build_defs` adds: the assets with policies, the lag check and the automation sensors."""

    assets: list[object]
    asset_checks: list[dg.AssetChecksDefinition]
    sensors: list[dg.SensorDefinition]


def automation_for(assets: Sequence[object], settings: AutomationSettings) -> Automation:
    """Freshness, eager conditions, the drop-lag check and both sensors for the given stage assets."""
    stage_keys = drop_stage_keys(assets)
    automation = dg.AutomationConditionSensorDefinition(
        "automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.automation_interval_s,
        description="Evaluates every automation condition: drop stages follow raw_crawl eagerly; "
        "release waits for every upstream blocking check to pass.",
    )
    has_raw_crawl = dg.AssetKey("raw_crawl") in stage_keys
    return Automation(
        assets=apply_policies(assets, settings),
        asset_checks=[drop_lag_check(stage_keys, settings.drop_lag_hours)] if has_raw_crawl else [],
        sensors=[automation, drop_lag_sensor(stage_keys, settings)] if has_raw_crawl else [automation],
    )
