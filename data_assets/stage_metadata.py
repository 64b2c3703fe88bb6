"""Materialization and definition metadata shared by every stage asset."""

from collections import Counter
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pyarrow as pa

from data_assets.plots import bar_chart_md
from mmrecipe.stage_output import StageOutput, markdown_table


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """A Dagster column schema for a pyarrow schema (shown in the UI as the asset's columns)."""
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])


def histogram_md(counts: Mapping[Any, int], key: str, top: int = 20) -> dg.MetadataValue:
    """A markdown table of the `top` most common values of a histogram."""
    rows = [{key: k, "count": int(n)} for k, n in Counter(counts).most_common(top)]
    return dg.MetadataValue.md(markdown_table(rows, [key, "count"]))


def stage_metadata(
    out: StageOutput, preview_columns: list[str], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Required metadata of a stage materialization: paths, row count, per-reason counts, preview."""
    counts = out.counts
    reasons = {f"{k}": n for k, n in {**counts.dropped, **counts.rejected}.items()}
    meta: dict[str, Any] = {
        "path": dg.MetadataValue.path(out.data_uri),
        "rejects_path": dg.MetadataValue.path(out.rejects_uri),
        "dagster/row_count": int(counts.kept),
        **counts.as_metadata(),
        "drop_reasons": histogram_md(reasons, "reason") if reasons else dg.MetadataValue.md("none"),
        "drop_reasons_chart": bar_chart_md(reasons, "drop and reject reasons")
        if reasons
        else dg.MetadataValue.md("none"),
        "preview": dg.MetadataValue.md(markdown_table(out.preview, preview_columns)),
    }
    meta.update(extra or {})
    return meta
