"""mixture: one recipe's training mixture over all drops, and the blocking checks that gate its release."""

from collections.abc import Callable

import dagster as dg

from data_assets.jobs import STEP_RETRY_POLICY
from data_assets.quarantine import definitions, drop_gate, read_gate
from data_assets.stage_metadata import column_schema
from mmrecipe.mixture.build import build_mixture, load_eval_sets
from mmrecipe.mixture.checks import Verdict, decontamination_verdict, lineage_verdict, token_share_verdict
from mmrecipe.mixture.manifest import DATA_CARD_FILE, MANIFEST_FILE, MANIFEST_SCHEMA, TOKENS_DIR, mixture_uri
from mmrecipe.mixture.sources import MixtureInputError
from mmrecipe.mixture.token_shards import TokenizerError
from mmrecipe.quarantine import QuarantineError, require_admitted
from mmrecipe.recipe import STAGES, RecipeError, default_eval_sets_dir, load_recipe
from mmrecipe.settings import Settings
from mmrecipe.stage_output import markdown_table
from mmrecipe.storage import Storage
from partitions import drops_partitions, recipes_partitions
from resources import LakeResource
from resources.pod_resources import pod_resources

ASSET = "mixture"
FIGURE_KEYS = ("pii", "opt_out", "noai", "redact")  # upstream metadata counts worth repeating in the data card


class MixtureConfig(dg.Config):
    """Where eval sets live and how large shards are."""

    eval_sets_dir: str = ""  # empty: MMRECIPE_EVALSETS, else the bundled eval sets
    shard_tokens: int = 1 << 24
    shard_images: int = 1000


def upstream_figures(instance: dg.DagsterInstance, stages: list[str], drops: list[str]) -> dict[str, dict[str, int]]:
    """PII / opt-out counts from the latest materialization metadata of each upstream partition."""
    out: dict[str, dict[str, int]] = {}
    for stage in stages:
        for drop in drops:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(stage), asset_partitions=[drop]), limit=1
            ).records
            meta = records[0].asset_materialization.metadata if records and records[0].asset_materialization else {}
            figures = {  # reject reasons are counted from the rejects tables already; keep the other non-zero counts
                k: int(v.value)
                for k, v in meta.items()
                if any(f in k for f in FIGURE_KEYS)
                and not k.startswith(("dropped", "rejected"))
                and isinstance(getattr(v, "value", None), int)
                and v.value
            }
            if figures:
                out[f"{stage}[{drop}]"] = figures
    return out


@dg.asset(
    retry_policy=STEP_RETRY_POLICY,
    partitions_def=recipes_partitions,
    group_name="recipe_stages",
    kinds={"parquet", "numpy", "webdataset"},
    owners=["team:research-data"],
    op_tags=pod_resources(ASSET),
    code_version="1",
    deps=[dg.AssetDep(stage, partition_mapping=dg.AllPartitionMapping()) for stage in STAGES],
    metadata={"dagster/column_schema": column_schema(MANIFEST_SCHEMA)},
)
def mixture(
    context: dg.AssetExecutionContext, config: MixtureConfig, lake: LakeResource, settings: dg.ResourceParam[Settings]
) -> dg.MaterializeResult:
    """Training mixture of one recipe: GPT-2 token shards, image-caption shards, manifest and data card."""
    storage = lake.storage()
    try:
        recipe = load_recipe(settings.recipes_dir, context.partition_key)
        gate = drop_gate(definitions(), drops_partitions, recipe.stages())
        quarantine = read_gate(context.instance, gate, context.instance.get_dynamic_partitions(drops_partitions.name))
        drops = require_admitted(quarantine, recipe.name)
        for drop, verdicts in quarantine.quarantined.items():
            context.log.warning(f"drop {drop} quarantined: " + "; ".join(f"{v.check_key} {v.detail}" for v in verdicts))
        eval_sets = load_eval_sets(
            config.eval_sets_dir or settings.eval_sets_dir or default_eval_sets_dir(), recipe.eval_sets
        )
        figures = upstream_figures(context.instance, recipe.stages(), drops)
        result = build_mixture(
            storage, recipe, drops, eval_sets, config.shard_tokens, config.shard_images, figures, quarantine.rows()
        )
    except (RecipeError, MixtureInputError, TokenizerError, FileNotFoundError, QuarantineError) as e:
        raise dg.Failure(description=str(e), allow_retries=False) from e  # retrying cannot fix these
    s = result.summary
    shares = [
        {k: src[k] for k in ("name", "target_share", "achieved_share", "achieved_tokens", "epochs")}
        for src in s["sources"]
    ]
    too_small = [f"{src['name']}: {src['note']}" for src in s["sources"] if src["too_small"]]
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(mixture_uri(storage, recipe.name, MANIFEST_FILE)),
            "tokens_path": dg.MetadataValue.path(mixture_uri(storage, recipe.name, TOKENS_DIR)),
            "data_card_path": dg.MetadataValue.path(mixture_uri(storage, recipe.name, DATA_CARD_FILE)),
            "dagster/row_count": int(s["documents"]),
            "version": s["version"],
            "drops": ", ".join(drops),
            "quarantined_drops": dg.MetadataValue.md(quarantine.markdown()),
            "gate_checks": ", ".join(f"{a}:{c}" for a, names in gate.items() for c in names),
            "tokens": int(s["achieved_tokens"]),
            "token_budget": int(s["total_tokens_budget"]),
            "document_copies": int(s["document_copies"]),
            "image_caption_pairs": int(s["webdataset"]["samples"]),
            "video_text_pairs": int(s.get("video_webdataset", {}).get("samples", 0)),
            "too_small_sources": "\n".join(too_small) or "none",
            "decontamination_worst_overlap": float(s["decontamination"]["worst_overlap"]),
            **{k: int(v) for k, v in result.cache_stats.items()},
            "shares": dg.MetadataValue.md(
                markdown_table(shares, ["name", "target_share", "achieved_share", "achieved_tokens", "epochs"])
            ),
            "data_card": dg.MetadataValue.md(result.data_card),
            "preview": dg.MetadataValue.md(
                markdown_table(result.manifest_preview, ["doc_id", "source", "drop", "url", "epochs", "tokens"])
            ),
        },
        data_version=dg.DataVersion(s["version"]),
    )


def _result(verdict: Verdict) -> dg.AssetCheckResult:
    meta = {
        k: dg.MetadataValue.md(v) if isinstance(v, str) and v.startswith("|") else v
        for k, v in verdict.metadata.items()
    }
    return dg.AssetCheckResult(passed=verdict.passed, description=verdict.description, metadata=meta)


def _check(name: str, description: str, verdict_of: Callable[[Storage, str], Verdict]) -> dg.AssetChecksDefinition:
    # partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
    @dg.asset_check(
        retry_policy=STEP_RETRY_POLICY,
        asset=mixture,
        name=name,
        blocking=True,
        partitions_def=recipes_partitions,
        description=description,
    )
    def _run(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        return _result(verdict_of(lake.storage(), context.partition_key))

    return _run


mixture_token_shares = _check(
    "token_shares_within_tolerance",
    "Each source's share of the mixture's tokens (from the manifest) is within the recipe's tolerance of its weight.",
    token_share_verdict,
)
mixture_decontaminated = _check(
    "decontaminated",
    "The n-gram (13 by default) overlap of the mixture's documents with each held-out eval set is below the "
    "recipe's threshold.",
    decontamination_verdict,
)
mixture_lineage = _check(
    "manifest_resolves_to_raw_crawl",
    "Every manifest row resolves to the raw_crawl response record with the same WARC path and offset.",
    lineage_verdict,
)
