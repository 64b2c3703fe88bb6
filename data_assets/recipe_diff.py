"""recipe_diff: what one recipe's mixture holds that a baseline recipe's does not, and the other way round."""

import dagster as dg

from data_assets.jobs import STEP_RETRY_POLICY
from mmrecipe.mixture.diff import diff_mixtures
from mmrecipe.settings import Settings, recipe_keys
from partitions import recipes_partitions
from resources import LakeResource

ASSET = "recipe_diff"


class RecipeDiffConfig(dg.Config):
    """The recipe every mixture is compared with."""

    baseline: str = "default"
    sample: int = 3


@dg.asset(
    retry_policy=STEP_RETRY_POLICY,
    partitions_def=recipes_partitions,
    group_name="reports",
    kinds={"markdown"},
    owners=["team:research-data"],
    code_version="1",
    deps=[dg.AssetDep("mixture", partition_mapping=dg.AllPartitionMapping())],
)
def recipe_diff(
    context: dg.AssetExecutionContext,
    config: RecipeDiffConfig,
    lake: LakeResource,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """The documents, token shares and recipe changes that separate a recipe's mixture from the baseline's."""
    storage = lake.storage()
    try:
        diff = diff_mixtures(
            storage, config.baseline, context.partition_key, recipe_keys(settings.recipes_dir), config.sample
        )
    except (ValueError, FileNotFoundError) as e:  # unknown recipe or unbuilt mixture: retrying cannot fix these
        raise dg.Failure(description=str(e), allow_retries=False) from e
    md = diff.markdown()
    uri = storage.uri(ASSET, context.partition_key, f"vs_{config.baseline}.md")
    storage.write_bytes(uri, md.encode("utf-8"))
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(uri),
            "dagster/row_count": diff.only_docs[diff.a] + diff.only_docs[diff.b],
            "baseline": config.baseline,
            "shared_documents": diff.shared_docs,
            f"only_in_{diff.a}": diff.only_docs[diff.a],
            f"only_in_{diff.b}": diff.only_docs[diff.b],
            "recipe_changes": len(diff.changes),
            "diff": dg.MetadataValue.md(md),
        }
    )
