"""raw_crawl: the index of every WARC record of a drop, and its coverage check."""

from collections import Counter

import dagster as dg
import pyarrow as pa

from data_assets.jobs import STEP_RETRY_POLICY
from data_assets.stage_metadata import column_schema, histogram_md, stage_metadata
from mmrecipe.crawl_index import coverage_problems, index_drop
from mmrecipe.drops import DropError, verify_drop
from mmrecipe.stage_output import REJECTS, read_stage_table
from mmrecipe.warc_index import INDEX_SCHEMA, WarcLimits
from partitions import drops_partitions
from resources import LakeResource, LandingResource
from resources.pod_resources import pod_resources


class RawCrawlConfig(dg.Config):
    """Limits for indexing WARC files."""

    max_record_bytes: int = 256 << 20


@dg.asset(
    retry_policy=STEP_RETRY_POLICY,
    partitions_def=drops_partitions,
    group_name="drop_stages",
    kinds={"warc", "parquet"},
    owners=["team:data-platform"],
    op_tags=pod_resources("raw_crawl"),
    code_version="1",
    metadata={"dagster/column_schema": column_schema(INDEX_SCHEMA)},
)
def raw_crawl(
    context: dg.AssetExecutionContext, config: RawCrawlConfig, lake: LakeResource, landing: LandingResource
) -> dg.MaterializeResult:
    """Index of every WARC record in a drop: file, offset, length and HTTP facts, no payload bytes."""
    drop = context.partition_key
    source = landing.storage()
    try:
        manifest = verify_drop(source, drop)
    except DropError as e:  # a bad drop stays bad: retrying the step cannot help
        raise dg.Failure(description=str(e), allow_retries=False) from None
    limits = WarcLimits(max_record_bytes=config.max_record_bytes)
    storage = lake.storage()
    result = index_drop(source, storage, drop, manifest.warc_files, limits)
    kinds = read_stage_table(storage, "raw_crawl", drop, columns=["record_type", "mime_type"]).to_pylist()
    mimes = Counter(r["mime_type"] or f"({r['record_type']})" for r in kinds)
    responses = sum(r["record_type"] == "response" for r in kinds)
    preview = ["record_type", "target_uri", "http_status", "mime_type", "payload_length", "warc_offset"]
    extra = {
        "warc_files": len(manifest.warc_files),
        "responses": int(responses),
        "mime_types": histogram_md(mimes, "mime_type"),
    }
    return dg.MaterializeResult(metadata=stage_metadata(result, preview, extra))


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(
    retry_policy=STEP_RETRY_POLICY,
    asset=raw_crawl,
    name="conservation",
    blocking=True,
    partitions_def=drops_partitions,
    description="Index rows and rejects tile every byte of every WARC file of the drop exactly once.",
)
def raw_crawl_conservation(
    context: dg.AssetCheckExecutionContext, lake: LakeResource, landing: LandingResource
) -> dg.AssetCheckResult:
    drop = context.partition_key
    source, storage = landing.storage(), lake.storage()
    manifest = verify_drop(source, drop)
    sizes = {source.uri(drop, name): source.size(source.uri(drop, name)) for name in manifest.warc_files}
    cols = ["warc_path", "warc_offset", "warc_length"]
    tables = [read_stage_table(storage, "raw_crawl", drop, tree, cols) for tree in ("data", REJECTS)]
    spans = pa.concat_tables(tables, promote_options="permissive")
    problems = coverage_problems(spans, sizes)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"files": len(sizes), "spans": spans.num_rows, "problems": "\n".join(problems[:20]) or "none"},
    )
