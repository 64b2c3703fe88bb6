"""ablations: each source's effect on each eval set, from leave-one-source-out proxy evals (opt-in per recipe)."""

import dagster as dg

from data_assets.eval_results import EvalResultsConfig, proxy_training, training_setup
from data_assets.stage_metadata import column_schema
from mmrecipe.proxy_eval.ablations import EFFECTS_SCHEMA, effects_markdown, run_ablations
from mmrecipe.recipe import RecipeError, load_recipe
from mmrecipe.settings import Settings
from resources import LakeResource
from resources.pod_resources import stage_device

ASSET = "ablations"


@dg.asset(
    **proxy_training(ASSET),
    group_name="reports",
    code_version="1",
    metadata={"dagster/column_schema": column_schema(EFFECTS_SCHEMA)},
)
def ablations(
    context: dg.AssetExecutionContext,
    config: EvalResultsConfig,
    lake: LakeResource,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """Each source's effect on each eval set: bits per byte without it minus the full mixture's, with its verdict."""
    recipe = context.partition_key
    try:
        opted_in = load_recipe(settings.recipes_dir, recipe).ablations
    except RecipeError as e:
        raise dg.Failure(description=str(e), allow_retries=False) from e
    if not opted_in:
        raise dg.Failure(
            description=f"recipe {recipe!r} does not opt in to ablations (they train one grid per source): add "
            f"`ablations: true` to {settings.recipes_dir}/{recipe}.yaml",
            allow_retries=False,
        )
    _, plan = training_setup(config, stage_device(ASSET, settings))
    try:
        out = run_ablations(lake.storage(), recipe, plan, settings.recipes_dir)
    except (ValueError, FileNotFoundError) as e:  # no mixture, one source, bad config: retrying cannot fix these
        raise dg.Failure(description=str(e), allow_retries=False) from e
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(out.effects_uri),
            "dagster/row_count": out.effects.num_rows,
            "eval_config": plan.label,
            "variants": ", ".join(sorted(out.ranking.best_lr)),
            "source_tokens": dg.MetadataValue.json(out.source_tokens),
            "stable_effects": int(sum(out.effects["stable"].to_pylist())),
            "training_runs": out.runs,
            "reused_runs": out.reused,  # full-mixture runs taken from eval_results (same run key)
            "train_wall_s_total": round(float(out.train_wall_s), 2),
            "effects": dg.MetadataValue.md(effects_markdown(out.effects)),
            "report": dg.MetadataValue.md(out.markdown),
        }
    )
