"""Checks every drop stage shares: conservation of records from its input to kept + rejects."""

import dagster as dg

from data_assets.jobs import STEP_RETRY_POLICY
from mmrecipe.crawl_index import read_records, stage_tables_uri
from mmrecipe.storage import Storage
from partitions import drops_partitions
from resources import LakeResource


def record_ids_conserved(storage: Storage, asset: str, drop: str, kind: str) -> dg.AssetCheckResult:
    """Whether every input record of a stage appears exactly once in its kept rows or rejects."""
    inputs = read_records(storage, drop, kind, columns=["record_id"])["record_id"]
    data_uri, rejects_uri = stage_tables_uri(storage, asset, drop)
    kept = storage.read_table(data_uri, columns=["record_id"])["record_id"]
    rejected = storage.read_table(rejects_uri, columns=["record_id"])["record_id"]
    in_ids = set(inputs.to_pylist())
    out_ids = kept.to_pylist() + rejected.to_pylist()
    out_set = set(out_ids)
    missing, extra = sorted(in_ids - out_set), sorted(out_set - in_ids)
    duplicated = len(out_ids) - len(out_set)
    passed = not missing and not extra and duplicated == 0 and len(inputs) == len(in_ids)
    return dg.AssetCheckResult(
        passed=passed,
        description=None if passed else f"{len(missing)} lost, {len(extra)} unexpected, {duplicated} duplicated",
        metadata={
            "in": len(inputs),
            "kept": len(kept),
            "dropped_or_rejected": len(rejected),
            "lost": len(missing),
            "unexpected": len(extra),
            "duplicated": int(duplicated),
            "lost_sample": ", ".join(missing[:5]) or "none",
        },
    )


def conservation_check(asset: str, kind: str) -> dg.AssetChecksDefinition:
    """Blocking check: in = kept + dropped + rejected, record by record, for one drop stage."""

    # partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
    @dg.asset_check(
        retry_policy=STEP_RETRY_POLICY,
        asset=asset,
        name="conservation",
        blocking=True,
        partitions_def=drops_partitions,
        description=f"Every {kind} record of raw_crawl appears exactly once in {asset}'s kept rows or rejects.",
    )
    def _conservation(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        return record_ids_conserved(lake.storage(), asset, context.partition_key, kind)

    return _conservation
