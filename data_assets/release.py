"""release: a recipe's mixture promoted to `<lake>/releases/<recipe>/<version>/`, only when its checks passed."""

import dagster as dg

from data_assets.jobs import STEP_RETRY_POLICY
from data_assets.mixture import blocking_check_keys
from data_assets.stage_metadata import column_schema
from mmrecipe.mixture.build import read_summary
from mmrecipe.mixture.manifest import MANIFEST_SCHEMA
from mmrecipe.mixture.release import promote
from partitions import recipes_partitions
from resources import LakeResource

# Cross-run gate: request a release when the mixture changed, and only once every blocking check on it passed.
# (In-run, Dagster itself skips release when a blocking check of the same run fails.)
RELEASE_CONDITION = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager_once_blocking_checks_passed")


def failing_blocking_checks(
    instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey], partition: str, version: str
) -> list[str]:
    """Why promotion must stop: blocking checks of this partition that did not pass on this mixture version."""
    from dagster._core.event_api import PartitionKeyFilter
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        check_keys, partition_filter=PartitionKeyFilter(key=partition)
    )
    problems = []
    for key in sorted(check_keys, key=lambda k: k.name):
        record = latest.get(key)
        if record is None or record.status != AssetCheckExecutionRecordStatus.SUCCEEDED:
            status = record.status.value if record else "never run"
            problems.append(f"{key.name}: {status}")
            continue
        evaluation = record.event.asset_check_evaluation if record.event else None
        checked = evaluation.metadata.get("mixture_version") if evaluation else None
        if checked is None or checked.value != version:
            problems.append(
                f"{key.name}: last passed on mixture version {getattr(checked, 'value', '?')}, not {version}"
            )
    return problems


@dg.asset(
    retry_policy=STEP_RETRY_POLICY,
    partitions_def=recipes_partitions,
    group_name="recipe_stages",
    kinds={"parquet"},
    owners=["team:research-data"],
    code_version="1",
    deps=["mixture"],
    automation_condition=RELEASE_CONDITION,
    metadata={"dagster/column_schema": column_schema(MANIFEST_SCHEMA)},  # the released manifest.parquet
)
def release(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Released training mixture of one recipe: an immutable, versioned copy of a mixture whose checks all passed."""
    recipe = context.partition_key
    storage = lake.storage()
    version = read_summary(storage, recipe)["version"]
    blocking = blocking_check_keys()
    problems = failing_blocking_checks(context.instance, blocking, recipe, version)
    if problems:
        raise dg.Failure(
            description=f"mixture[{recipe}] version {version} is not releasable: " + "; ".join(problems),
            metadata={"failing_checks": "\n".join(problems)},
            allow_retries=False,  # a closed gate stays closed until the mixture or its checks change
        )
    rel = promote(storage, recipe, extra={"checks_passed": sorted(k.name for k in blocking)})
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(rel.uri),
            "version": rel.version,
            "files": rel.files,
            "bytes": rel.bytes,
            "already_released": rel.already_released,
            "checks_passed": ", ".join(sorted(k.name for k in blocking)),
        },
        data_version=dg.DataVersion(rel.version),
    )
