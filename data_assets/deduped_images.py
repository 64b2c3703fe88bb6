"""deduped_images: the drop's images, safely decoded, filtered, pHash-deduplicated across drops and captioned.

Cross-drop ownership (see `mmrecipe.images.phash_index`): a drop is deduplicated only against drops
whose key sorts before it. When an earlier-key drop is materialized after a later one, the later
one becomes stale: the materialization lists it in `stale_drops`, and the `stale_image_drops`
sensor (`sensors.stale_drops`) re-materializes stale drops one at a time in key order until none is left.
"""

import dagster as dg
import numpy as np
from pydantic import Field

from data_assets.jobs import STEP_RETRY_POLICY
from data_assets.stage_checks import conservation_check
from data_assets.stage_metadata import column_schema, histogram_md, stage_metadata
from mmrecipe.dedup.bucket_file import DEFAULT_BUCKETS
from mmrecipe.images import phash_index
from mmrecipe.images.image_analysis import ImageStageConfig, default_workers
from mmrecipe.images.image_filters import ImageFilters
from mmrecipe.images.stage import IMAGE_SCHEMA, ImageStageReport, run_image_stage
from mmrecipe.settings import Settings
from mmrecipe.stage_output import read_stage_table
from partitions import drop_key, drops_partitions
from resources import LakeResource
from resources.engine import EngineResource
from resources.pod_resources import pod_resources, ray_task_resources

MIN_CAPTION_COVERAGE = 0.5


class DedupedImagesConfig(dg.Config):
    """Filters, near-duplicate threshold and output settings of the image stage."""

    max_side: int = 512  # longer side of the normalized JPEG
    min_side: int = 64  # drops icons and tracking pixels
    max_aspect_ratio: float = 3.0  # drops banners and spacers
    max_pixels: int = 40_000_000  # policy limit (dropped); larger than this is not decoded
    max_decode_pixels: int = 89_478_485  # decompression-bomb limit (rejected), Pillow's default
    allowed_formats: str = "JPEG,PNG,WEBP,GIF"  # comma-separated Pillow format names
    hamming_k: int = 10  # re-encode/resize <=2, brightness x1.3 <=8 (photos <=6), distinct >=20 measured
    hash_bands: int = 4
    surrounding_text: bool = True  # figcaption / parent text when there is no alt or title
    nsfw: bool = False  # NudeNet's offline detector (packaged model unless nsfw_model_path is set)
    nsfw_threshold: float = 0.5
    nsfw_model_path: str = ""
    shard_samples: int = 1000
    shard_uncaptioned: bool = False
    workers: int = Field(
        default=0,
        description="Threads that decode, hash and normalize images (the output is the same for any value). "
        "0: the CPUs this process may use (CPU affinity and cgroup quota), at most 8.",
    )

    def stage_config(self, index_buckets: int = DEFAULT_BUCKETS) -> ImageStageConfig:
        filters = ImageFilters.of(
            self.min_side, self.max_aspect_ratio, self.max_pixels, self.allowed_formats.split(",")
        )
        return ImageStageConfig(
            self.max_side, filters, self.max_decode_pixels, self.hamming_k, self.hash_bands, index_buckets,
            self.surrounding_text,
            self.nsfw, self.nsfw_threshold, self.nsfw_model_path or None, self.shard_samples, self.shard_uncaptioned,
            workers=self.workers if self.workers > 0 else default_workers(),
        )  # fmt: skip


def thumbnails_md(report: ImageStageReport) -> dg.MetadataValue:
    """A markdown table of a few kept images as small inline JPEG thumbnails."""
    lines = ["| thumbnail | url | caption |", "|---|---|---|"]
    for t in report.thumbnails:
        caption = (t["caption"] or "").replace("|", "\\|")[:80]
        lines.append(f"| ![thumbnail]({t['thumb']}) | {t['url']} | {caption} |")
    return dg.MetadataValue.md("\n".join(lines))


@dg.asset(
    retry_policy=STEP_RETRY_POLICY,
    partitions_def=drops_partitions,
    deps=["raw_crawl"],
    group_name="drop_stages",
    kinds={"image", "parquet"},
    owners=["team:data-platform"],
    op_tags=pod_resources("deduped_images"),
    code_version="2",  # 2: one pHash preprocessing for every format (phash_index.HASH_VERSION v2)
    metadata={"dagster/column_schema": column_schema(IMAGE_SCHEMA)},
)
def deduped_images(
    context: dg.AssetExecutionContext,
    config: DedupedImagesConfig,
    lake: LakeResource,
    engine: EngineResource,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """Images of a drop with alt-text captions: one row per kept image, normalized JPEG, pHash dedup cluster."""
    drop, stage_engine = drop_key(context), engine.engine(**ray_task_resources("deduped_images", settings))
    stage_config = config.stage_config(settings.dedup_buckets)
    result = run_image_stage(lake.storage(), drop, stage_config, None, stage_engine, engine.shard_bytes)
    report = result.report
    if report.stale_drops:
        context.log.warning(f"image dedup of drops {report.stale_drops} is stale: stale_image_drops re-runs them")
    preview = ["url", "width", "height", "format", "caption_source", "caption", "dedup_cluster"]
    extra = {
        "formats": histogram_md(report.formats, "format"),
        "sizes": histogram_md(report.sizes, "longer_side"),
        "caption_sources": histogram_md(report.caption_sources, "caption_source"),
        "caption_coverage": float(report.caption_coverage),
        "shards": dg.MetadataValue.json(report.shards),
        "shard_samples": int(report.shard_samples),
        "html_pages": int(report.pages),
        "opted_out_pages": int(report.opted_out_pages),
        "animated": int(report.animated),
        "hamming_k": int(config.hamming_k),
        "index_path": dg.MetadataValue.path(phash_index.entries_uri(lake.storage(), drop)),
        "index_digest": report.digest,
        "index_bytes_read": int(report.index_bytes_read),
        "stale_drops": dg.MetadataValue.json(report.stale_drops),
        "thumbnails": thumbnails_md(report),
        **result.run.metadata(),
    }
    return dg.MaterializeResult(metadata=stage_metadata(result.output, preview, extra))


deduped_images_conservation = conservation_check("deduped_images", "image")


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(
    retry_policy=STEP_RETRY_POLICY,
    asset=deduped_images,
    name="no_near_duplicates_kept",
    blocking=True,
    partitions_def=drops_partitions,
    description="No two kept images within Hamming distance k, in this drop or against earlier drops' kept images.",
)
def no_near_duplicates_kept(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    drop, storage = context.partition_key, lake.storage()
    kept = read_stage_table(storage, "deduped_images", drop, columns=["record_id", "phash"])
    ids = kept["record_id"].to_pylist()
    audit = phash_index.audit_kept(storage, drop, ids, np.asarray(kept["phash"].to_pylist(), np.int64))
    return dg.AssetCheckResult(
        passed=audit.passed,
        description=audit.describe(),
        metadata={
            "kept": len(ids),
            "k": audit.k,
            "conflicts": len(audit.conflicts),
            "stale": audit.stale,
            "index_mismatch": audit.index_mismatch,
            "sample": "\n".join(audit.conflicts[:10]) or "none",
        },
    )


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(
    retry_policy=STEP_RETRY_POLICY,
    asset=deduped_images,
    name="caption_coverage",
    blocking=False,
    partitions_def=drops_partitions,
    description=f"Share of kept images with a caption (alt, title or nearby text); warns below {MIN_CAPTION_COVERAGE}.",
)
def caption_coverage(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    storage = lake.storage()
    sources = read_stage_table(storage, "deduped_images", context.partition_key, columns=["caption_source"])
    values = sources["caption_source"].to_pylist()
    coverage = 1 - values.count("none") / len(values) if values else 0.0
    return dg.AssetCheckResult(
        passed=coverage >= MIN_CAPTION_COVERAGE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"coverage": float(round(coverage, 4)), "kept": len(values), "uncaptioned": values.count("none")},
    )
