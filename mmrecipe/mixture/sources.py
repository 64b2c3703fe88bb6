"""A recipe's candidate documents: the upstream stage rows of all drops that pass each source's filters.

Upstream stages publish their kept rows in `<lake>/<stage>/data/<drop>/` (see `stage_output`). Every drop of every
stage a recipe uses must be there; the file's sha256 and row count are the input data version recorded in the
manifest and data card.
Filters run in a fixed order and each excluded row is counted under the filter that excluded it; the
percentile filter (`min_quality_percentile`) is computed over the rows that passed the other filters.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmrecipe.recipe import TEXT_COLUMN, Source
from mmrecipe.stage_output import REJECTS, committed, is_committed, stage_uri
from mmrecipe.storage import Storage

# Columns read from each stage (besides provenance); images' JPEG bytes are read only for selected rows.
STAGE_COLUMNS = {
    "extracted_text": ["url", "text", "language", "language_score", "quality_score", "toxicity_score"],
    "deduped_images": ["url", "caption", "caption_source", "page_url", "width", "height"],
    "transcribed_audio": ["url", "transcript", "language", "duration_s"],
    "video_clips": ["clip_id", "url", "caption", "caption_source", "page_url", "duration_s"],
}


class MixtureInputError(ValueError):
    """Upstream data a mixture needs is missing or unusable."""


@dataclass(frozen=True)
class StageInput:
    """One upstream stage partition a mixture reads, pinned by content."""

    stage: str
    drop: str
    data_uri: str
    rejects_uri: str
    rows: int
    sha256: str


def stage_inputs(storage: Storage, stages: Sequence[str], drops: Sequence[str]) -> list[StageInput]:
    """Every (stage, drop) input with its sha256; raises MixtureInputError naming what to materialize."""
    if not drops:
        raise MixtureInputError("no drops are registered: ingest a drop (mmrecipe ingest DIR) before building")
    found: list[StageInput] = []
    missing: list[str] = []
    for stage in stages:
        for drop in sorted(drops):
            if not is_committed(storage, stage, drop):
                missing.append(f"{stage}[{drop}]")
                continue
            parts = committed(storage, stage, drop)
            digest = hashlib.sha256("".join(p.sha256 for p in parts).encode()).hexdigest()  # of every data part
            data, rejects = stage_uri(storage, stage, drop), stage_uri(storage, stage, drop, REJECTS)
            found.append(StageInput(stage, drop, data, rejects, sum(p.rows for p in parts), digest))
    if missing:
        raise MixtureInputError(
            f"upstream partitions not materialized: {', '.join(missing)}. Materialize them "
            "(e.g. run drop_stages_job for those drops) and build the mixture again."
        )
    return found


@dataclass
class Candidates:
    """A source's candidate rows (indices into its stage table) and why the other rows were excluded."""

    source: Source
    rows: np.ndarray
    excluded: Counter[str] = field(default_factory=Counter)
    thresholds: dict[str, float] = field(default_factory=dict)


def _num(table: pa.Table, col: str) -> np.ndarray:
    return table[col].to_numpy(zero_copy_only=False).astype(np.float64)


def select_candidates(table: pa.Table, source: Source, token_counts: np.ndarray) -> Candidates:
    """The rows of `table` (one stage, all drops) that pass `source`'s filters and have at least one token."""
    f = source.filters
    keep = np.ones(table.num_rows, dtype=bool)
    excluded: Counter[str] = Counter()
    thresholds: dict[str, float] = {}

    def apply(name: str, mask: np.ndarray) -> None:
        nonlocal keep
        mask = np.asarray(mask, dtype=bool)
        excluded[name] += int((keep & ~mask).sum())
        keep &= mask

    text = table[TEXT_COLUMN[source.stage]]
    chars = pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
    apply("empty_text", token_counts > 0)
    if "languages" in f or "exclude_languages" in f:
        lang = np.array(pc.fill_null(table["language"], "").to_pylist(), dtype=object)
        in_list = np.isin(lang, f.get("languages") or f.get("exclude_languages"))
        apply("language", in_list if "languages" in f else ~in_list)
    for key, col, sense in [
        ("min_language_score", "language_score", ">="),
        ("min_quality", "quality_score", ">="),
        ("max_toxicity", "toxicity_score", "<="),
        ("min_width", "width", ">="),
        ("min_height", "height", ">="),
        ("min_duration_s", "duration_s", ">="),
        ("max_duration_s", "duration_s", "<="),
    ]:
        if key in f:
            v = _num(table, col)
            apply(
                key,
                np.nan_to_num(v, nan=-np.inf) >= f[key] if sense == ">=" else np.nan_to_num(v, nan=np.inf) <= f[key],
            )
    for key in ("min_chars", "min_caption_chars"):
        if key in f:
            apply(key, chars >= f[key])
    if "caption_sources" in f:
        apply(
            "caption_sources",
            np.isin(np.array(table["caption_source"].to_pylist(), dtype=object), f["caption_sources"]),
        )
    if "min_quality_percentile" in f and keep.any():
        q = _num(table, "quality_score")
        cut = (
            float(np.percentile(q[keep & ~np.isnan(q)], f["min_quality_percentile"]))
            if (keep & ~np.isnan(q)).any()
            else np.inf
        )
        thresholds["quality_score"] = cut
        apply("min_quality_percentile", np.nan_to_num(q, nan=-np.inf) >= cut)
    return Candidates(source, np.flatnonzero(keep), excluded, thresholds)
