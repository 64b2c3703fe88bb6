"""release: a recipe's mixture promoted to `<lake>/releases/<recipe>/<version>/`, only when its checks passed."""

import dagster as dg

from data_assets.jobs import STEP_RETRY_POLICY
from data_assets.quarantine import blocking_checks, definitions, drop_gate, read_gate
from data_assets.stage_metadata import column_schema
from mmrecipe.mixture.build import read_summary
from mmrecipe.mixture.manifest import MANIFEST_SCHEMA
from mmrecipe.mixture.release import EVIDENCE_FILE, promote
from mmrecipe.stage_output import markdown_table
from partitions import drops_partitions, recipes_partitions
from resources import LakeResource

# Cross-run gate: request a release when the mixture changed, and only once every blocking check on it passed.
# (In-run, Dagster itself skips release when a blocking check of the same run fails.)
RELEASE_CONDITION = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager_once_blocking_checks_passed")
EVIDENCE_COLUMNS = ["partition", "check_key", "status", "run_id", "evaluated_run_id"]


def release_evidence(instance: dg.DagsterInstance, recipe: str, summary: dict) -> list[dict]:
    """Every blocking check the release relies on, re-read now: each drop in the mixture, and the mixture itself."""
    defs = definitions()
    drops = sorted({i["drop"] for i in summary["inputs"]})
    stages = sorted({i["stage"] for i in summary["inputs"]})
    drop_checks = read_gate(instance, drop_gate(defs, drops_partitions, stages), drops)
    own = {"mixture": blocking_checks(defs, recipes_partitions)["mixture"]}
    return drop_checks.evidence() + read_gate(instance, own, [recipe]).evidence()


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
    recipe, storage = context.partition_key, lake.storage()
    summary = read_summary(storage, recipe)
    evidence = release_evidence(context.instance, recipe, summary)
    problems = [f"{e['partition']}: {e['check_key']} {e['detail']}" for e in evidence if not e["admits"]]
    if problems:
        raise dg.Failure(
            description=f"mixture[{recipe}] version {summary['version']} is not releasable: " + "; ".join(problems),
            metadata={"failing_checks": "\n".join(problems)},
            allow_retries=False,  # a closed gate stays closed until the drops, the mixture or their checks change
        )
    rel = promote(
        storage, recipe, extra={"checks_passed": sorted({e["check_key"] for e in evidence})}, evidence=evidence
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(rel.uri),
            "version": rel.version,
            "files": rel.files,
            "bytes": rel.bytes,
            "already_released": rel.already_released,
            "checks_passed": ", ".join(sorted({e["check_key"] for e in evidence})),
            "check_evidence_path": dg.MetadataValue.path(f"{rel.uri}/{EVIDENCE_FILE}"),
            "check_evidence": dg.MetadataValue.md(markdown_table(evidence, EVIDENCE_COLUMNS)),
        },
        data_version=dg.DataVersion(rel.version),
    )
