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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from data_assets.jobs import DROP_STAGES, RECIPE_STAGES, STEP_RETRY_POLICY
from mmrecipe.drops import MANIFEST, DropError, validate_drop_name
from mmrecipe.settings import AutomationSettings
from mmrecipe.stage_output import markdown_table
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


@dataclass(frozen=True)
class DropLag:
    """One landed drop: when its manifest landed and which drop stages have not materialized it since."""

    drop: str
    landed_at: float
    missing: tuple[str, ...]
    status: str  # processed | waiting | lagging | invalid_name


def landed_drops(storage: Storage) -> dict[str, float]:
    """Drop folder name → modification time (epoch s) of its manifest, for every folder that has one."""
    landed: dict[str, float] = {}
    for name in storage.list_dirs(storage.root):
        if name.startswith((".", "_")):
            continue
        manifest = storage.uri(name, MANIFEST)
        for uri, _, mtime_ns in storage.stat_files(storage.uri(name)):
            if uri == manifest:
                landed[name] = mtime_ns / 1e9
    return landed


def latest_materialization(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> float | None:
    """When `key` last materialized `partition` (epoch s), or None."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), 1)
    return records.records[0].timestamp if records.records else None


def drop_lags(
    landed: Mapping[str, float],
    materialized_at: Callable[[dg.AssetKey, str], float | None],
    stage_keys: Sequence[dg.AssetKey],
    max_lag_s: float,
    now: float,
) -> list[DropLag]:
    """The state of every landed drop: processed once every stage materialized it after its manifest landed."""
    out = []
    for drop, landed_at in sorted(landed.items()):
        try:
            validate_drop_name(drop)
            missing = tuple(k.to_user_string() for k in stage_keys if (materialized_at(k, drop) or -1.0) < landed_at)
            late_status = "lagging"
        except DropError:
            missing, late_status = tuple(k.to_user_string() for k in stage_keys), "invalid_name"
        late = now - landed_at >= max_lag_s
        status = "processed" if not missing else (late_status if late else "waiting")
        out.append(DropLag(drop, landed_at, missing, status))
    return out


def lag_verdict(lags: Sequence[DropLag], max_lag_hours: float, now: float) -> tuple[bool, str, dict[str, object]]:
    """(passed, description, metadata) of the drop-lag check for these drops."""
    late = [lag for lag in lags if lag.status in ("lagging", "invalid_name")]
    order = {"lagging": 0, "invalid_name": 1, "waiting": 2, "processed": 3}
    rows = [
        {
            "drop": lag.drop,
            "status": lag.status,
            "landed_utc": datetime.fromtimestamp(lag.landed_at, UTC).strftime("%Y-%m-%d %H:%M"),
            "age_hours": round((now - lag.landed_at) / 3600, 2),
            "missing_stages": ", ".join(lag.missing) or "-",
        }
        for lag in sorted(lags, key=lambda g: (order[g.status], g.drop))[:50]
    ]
    counts = {s: sum(1 for lag in lags if lag.status == s) for s in order}
    if late:
        names = ", ".join(f"{lag.drop} ({lag.status}; missing {', '.join(lag.missing)})" for lag in late[:10])
        description = (
            f"{len(late)} drop(s) landed more than {max_lag_hours:g} h ago and are not processed: {names}. "
            "Check the source_drops sensor and the drop's runs, then materialize drop_stages_job for it "
            "(an invalid_name drop must be renamed and landed again)."
        )
    else:
        description = f"every drop that landed more than {max_lag_hours:g} h ago is processed"
    metadata: dict[str, object] = {
        "max_lag_hours": float(max_lag_hours),
        "drops_landed": len(lags),
        **{f"drops_{status}": int(n) for status, n in counts.items()},
        "late_drops": ", ".join(lag.drop for lag in late) or "none",
        "drops": dg.MetadataValue.md(
            markdown_table(rows, ["drop", "status", "landed_utc", "age_hours", "missing_stages"]) if rows else "none"
        ),
    }
    return not late, description, metadata


def evaluate_drop_lag(
    instance: dg.DagsterInstance, landing: Storage, stage_keys: Sequence[dg.AssetKey], max_lag_hours: float, now: float
) -> tuple[bool, str, dict[str, object]]:
    """The drop-lag verdict for the drops in `landing` against the materializations recorded in `instance`."""
    lags = drop_lags(
        landed_drops(landing),
        lambda key, drop: latest_materialization(instance, key, drop),
        stage_keys,
        max_lag_hours * 3600,
        now,
    )
    return lag_verdict(lags, max_lag_hours, now)


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
