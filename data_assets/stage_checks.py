"""Checks every drop stage shares: conservation of records from its input to kept + rejects."""

import dagster as dg

from data_assets.jobs import STEP_RETRY_POLICY
from mmrecipe.conservation import record_ids_conserved
from partitions import drops_partitions
from resources import LakeResource


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
        verdict = record_ids_conserved(lake.storage(), asset, context.partition_key, kind)
        return dg.AssetCheckResult(passed=verdict.passed, description=verdict.description, metadata=verdict.metadata())

    return _conservation
