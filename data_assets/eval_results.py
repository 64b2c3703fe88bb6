"""eval_results: proxy models trained on one recipe's mixture over a seed x learning-rate grid, in bits per byte."""

from typing import Any

import dagster as dg
from pydantic import Field

from data_assets.jobs import STEP_RETRY_POLICY
from data_assets.plots import loss_curve_png, png_md
from data_assets.stage_metadata import column_schema
from mmrecipe.proxy_eval.evaluate import RESULTS_SCHEMA, EvalPlan, eval_results_verdict, evaluate_recipe
from mmrecipe.proxy_eval.leaderboard import best_learning_rates, scores
from mmrecipe.proxy_eval.presets import EVAL_PRESETS, EvalPreset, eval_preset, scale_label, with_overrides
from mmrecipe.settings import Settings
from mmrecipe.stage_output import markdown_table
from partitions import recipes_partitions
from resources import LakeResource
from resources.pod_resources import pod_resources, stage_device

ASSET = "eval_results"


class EvalResultsConfig(dg.Config):
    """Proxy-model budget: a named preset (`full`: 3 seeds x 2 learning rates; `demo`; a GPU ladder) and overrides."""

    preset: str = Field(default="full", description=f"one of {sorted(EVAL_PRESETS)} (mmrecipe.proxy_eval.presets)")
    seeds: list[int] | None = None
    lrs: list[float] | None = None  # peak learning rates of the grid
    train_tokens: int | None = None
    batch_size: int | None = None
    context: int | None = None
    d_model: int | None = None
    n_layer: int | None = None
    n_head: int | None = None
    device: str = ""  # "cpu", "cuda" or "auto"; empty: the preset's, else cuda when the stage gets a GPU
    dtype: str = ""  # "float32" or "bfloat16"; empty: the preset's
    threads: int = 0  # 0: torch's default


def training_setup(config: EvalResultsConfig, device: str) -> tuple[EvalPreset, EvalPlan]:
    """The chosen preset and the evaluation plan it gives (`device`: the stage's, when the preset names none)."""
    try:
        chosen, label = with_overrides(eval_preset(config.preset), config.model_dump())
        return chosen, EvalPlan.of(chosen, label, device, config.threads or None)
    except ValueError as e:
        raise dg.Failure(description=str(e), allow_retries=False) from None


def proxy_training(asset: str) -> dict[str, Any]:
    """The @dg.asset arguments of a stage that trains proxy models on a recipe's mixture (eval_results, ablations)."""
    return {
        "retry_policy": STEP_RETRY_POLICY,
        "partitions_def": recipes_partitions,
        "kinds": {"pytorch", "parquet"},
        "owners": ["team:research-data"],
        "op_tags": pod_resources(asset),
        "deps": ["mixture"],
    }


@dg.asset(
    **proxy_training(ASSET),
    group_name="recipe_stages",
    code_version="2",  # 2: a seed x learning-rate grid, per-document losses
    metadata={"dagster/column_schema": column_schema(RESULTS_SCHEMA)},
)
def eval_results(
    context: dg.AssetExecutionContext,
    config: EvalResultsConfig,
    lake: LakeResource,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """Bits per byte of held-out eval sets under small transformers trained on the recipe's mixture, per grid run."""
    recipe = context.partition_key
    chosen, plan = training_setup(config, stage_device(ASSET, settings))
    try:
        out = evaluate_recipe(lake.storage(), recipe, plan, settings.recipes_dir, loss_curve_png)
    except (ValueError, FileNotFoundError) as e:  # bad config or no mixture: retrying cannot fix these
        raise dg.Failure(description=str(e), allow_retries=False) from e
    rows = out.results.to_pylist()
    all_scores = scores(out.results)
    best = best_learning_rates(all_scores)[recipe]
    summary = [
        {"eval_set": s.eval_set, "lr": s.lr, "best": "yes" if s.lr == best else "", "seeds": s.n}
        | {"bpb_mean": round(s.mean, 4), "bpb_std": round(s.std, 4) if s.n > 1 else "n/a"}
        for s in all_scores
    ]
    wall = sum(r.wall_s for r in out.runs)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(out.results_uri),
            "loss_curves_path": dg.MetadataValue.path(out.curves_uri),
            "dagster/row_count": len(rows),
            "mixture_version": out.mixture_version,
            "eval_config": plan.label,
            "seeds": ", ".join(str(s) for s in chosen.seeds),
            "learning_rates": ", ".join(f"{lr:g}" for lr in chosen.lrs),
            "best_lr": float(best),
            "device": out.runs[0].device,
            "dtype": out.runs[0].dtype,
            "parameters": int(out.grid.parameters),
            "tokens_seen_per_seed": int(out.runs[0].tokens_seen),
            "scale": scale_label(out.runs[0].tokens_seen, out.grid.parameters),
            "train_wall_s_total": round(float(wall), 2),
            "train_tokens_per_s": round(float(sum(r.tokens_seen for r in out.runs) / wall), 1) if wall else 0.0,
            "bits_per_byte": dg.MetadataValue.md(
                markdown_table(summary, ["eval_set", "lr", "best", "seeds", "bpb_mean", "bpb_std"])
            ),
            "per_seed": dg.MetadataValue.md(
                markdown_table(
                    [
                        {**r, "bpb": round(r["bpb"], 4), "final_train_loss": round(r["final_train_loss"], 3)}
                        for r in rows
                    ],
                    ["lr", "seed", "eval_set", "bpb", "tokens_seen", "final_train_loss", "wall_s"],
                )
            ),
            "loss_curve": png_md(out.loss_png, f"training loss, mixture[{recipe}]"),
        }
    )


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(
    retry_policy=STEP_RETRY_POLICY,
    asset=eval_results,
    name="complete_and_current",
    blocking=True,
    partitions_def=recipes_partitions,
    description="Every learning rate x seed x eval set has a finite bits-per-byte, every run's training loss fell, "
    "and the results are for the mixture version now in the lake.",
)
def eval_results_complete(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    verdict = eval_results_verdict(lake.storage(), context.partition_key)
    return dg.AssetCheckResult(passed=verdict.passed, description=verdict.description, metadata=verdict.metadata)
