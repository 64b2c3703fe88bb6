"""Reads the gate's evidence from the Dagster instance: blocking check specs, current materializations, evaluations.

The decision itself is `mmrecipe.quarantine.gate_drops`; this module only collects its inputs through
public Dagster APIs.
"""

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

from mmrecipe.quarantine import CheckEvaluation, Materialization, Quarantine, gate_drops, gated_stages

NO_RUN = "(reported without a run)"  # events recorded with `report_runless_asset_event` or the REST API


def definitions() -> dg.Definitions:
    """The code location's Definitions, imported on use (they hold the assets that read the gate)."""
    from data_assets.definitions import defs

    return defs


def blocking_checks(defs: dg.Definitions, partitions_def: dg.PartitionsDefinition) -> dict[str, list[str]]:
    """Each asset partitioned by `partitions_def` with the names of its blocking checks (from the Definitions)."""
    partitioned = {s.key for s in defs.resolve_all_asset_specs() if s.partitions_def == partitions_def}
    out: dict[str, list[str]] = {}
    for spec in (s for d in [*(defs.assets or []), *(defs.asset_checks or [])] for s in d.check_specs):  # type: ignore[union-attr]
        if spec.blocking and spec.asset_key in partitioned:
            out.setdefault(spec.asset_key.to_user_string(), []).append(spec.name)
    return {k: sorted(set(v)) for k, v in sorted(out.items())}


def drop_gate(
    defs: dg.Definitions, partitions_def: dg.PartitionsDefinition, stages: Iterable[str]
) -> dict[str, list[str]]:
    """The blocking checks that gate a drop for a reader of `stages`: theirs and their partitioned ancestors'."""
    specs = [s for s in defs.resolve_all_asset_specs() if s.partitions_def == partitions_def]
    names = {s.key.to_user_string() for s in specs}
    parents = {
        s.key.to_user_string(): [d.asset_key.to_user_string() for d in s.deps if d.asset_key.to_user_string() in names]
        for s in specs
    }
    checks = blocking_checks(defs, partitions_def)
    return {stage: checks[stage] for stage in gated_stages(parents, stages) if stage in checks}


def current_materializations(
    instance: dg.DagsterInstance, assets: Iterable[str], partitions: Iterable[str]
) -> dict[tuple[str, str], Materialization]:
    """The latest materialization of each (asset, partition) that has one."""
    out: dict[tuple[str, str], Materialization] = {}
    for asset in assets:
        for partition in partitions:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
            ).records
            if records:
                r = records[0]
                out[(asset, partition)] = Materialization(r.storage_id, r.run_id or NO_RUN, r.timestamp)
    return out


def latest_evaluations(
    instance: dg.DagsterInstance, checks: Mapping[str, Sequence[str]], partitions: Iterable[str]
) -> dict[tuple[str, str, str], CheckEvaluation]:
    """The latest evaluation of each (asset, check, partition) asked for, by event time.

    Dagster 1.13 has no public, non-deprecated read of asset check evaluations: `get_event_records`
    is the public one (deprecated for 2.0, with no replacement named); its DeprecationWarning is left
    visible on purpose. Check events are not indexed by asset key, so they are filtered here; on the
    run-sharded SQLite storage records are not in time order, hence the max by timestamp.
    """
    wanted = {(a, c) for a, names in checks.items() for c in names}
    parts = set(partitions)
    out: dict[tuple[str, str, str], CheckEvaluation] = {}
    records = instance.get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION))
    for record in records:
        event = record.event_log_entry.dagster_event
        ev = event.event_specific_data if event else None
        if not isinstance(ev, dg.AssetCheckEvaluation):
            continue
        key = (ev.asset_key.to_user_string(), ev.check_name, ev.partition or "")
        if key[:2] not in wanted or key[2] not in parts:
            continue
        if key in out and out[key].timestamp >= record.timestamp:
            continue
        target = ev.target_materialization_data
        out[key] = CheckEvaluation(
            passed=ev.passed,
            run_id=record.run_id or NO_RUN,
            timestamp=record.timestamp,
            warning_only=ev.severity == dg.AssetCheckSeverity.WARN,
            target_storage_id=target.storage_id if target else None,
            target_run_id=(target.run_id or NO_RUN) if target else None,
        )
    return out


def read_gate(
    instance: dg.DagsterInstance, checks: Mapping[str, Sequence[str]], partitions: Iterable[str]
) -> Quarantine:
    """The gate's decision for `partitions` under `checks` (asset -> blocking check names), from the instance."""
    parts = sorted(set(partitions))
    materializations = current_materializations(instance, checks, parts)
    return gate_drops(parts, checks, materializations, latest_evaluations(instance, checks, parts))
