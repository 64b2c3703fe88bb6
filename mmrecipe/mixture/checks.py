"""The verdicts that gate a mixture's release, recomputed from its published files (not from the build's memory).

- token shares: each source's share of the mixture's tokens, from the manifest, within the recipe's tolerance;
- decontamination: the n-gram overlap between the mixture's documents (re-read from the upstream stage
  rows the manifest points at) and the eval sets stored with the mixture, below the recipe's threshold;
- lineage: every manifest row resolves to a raw_crawl response record with the same WARC path and offset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mmrecipe.lineage import unresolved_manifest_rows
from mmrecipe.mixture.build import read_summary
from mmrecipe.mixture.decontamination import contamination
from mmrecipe.mixture.manifest import EVALSETS_DIR, RECIPE_FILE, doc_key, mixture_uri, read_manifest
from mmrecipe.recipe import DOC_KEY, TEXT_COLUMN, Recipe, parse_recipe
from mmrecipe.stage_output import markdown_table, read_stage_table
from mmrecipe.storage import Storage


@dataclass
class Verdict:
    """A check's outcome: passed or not, why, and figures to show."""

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _recipe_of(storage: Storage, recipe: str) -> Recipe:
    uri = mixture_uri(storage, recipe, RECIPE_FILE)
    return parse_recipe(storage.read_bytes(uri).decode("utf-8"), uri, expected_name=recipe)


def token_share_verdict(storage: Storage, recipe: str) -> Verdict:
    """Whether each source's achieved token share (from the manifest) is within tolerance of its target."""
    spec = _recipe_of(storage, recipe)
    summary = read_summary(storage, recipe)
    m = read_manifest(storage, recipe, columns=["source", "tokens", "epochs"])
    taken: dict[str, int] = {s.name: 0 for s in spec.sources}
    for src, tokens, epochs in zip(
        m["source"].to_pylist(), m["tokens"].to_pylist(), m["epochs"].to_pylist(), strict=True
    ):
        taken[src] = taken.get(src, 0) + tokens * epochs
    total = sum(taken.values())
    targets = spec.target_shares()
    rows, bad = [], []
    for name, target in targets.items():
        achieved = taken[name] / total if total else 0.0
        dev = abs(achieved - target)
        rows.append(
            {"source": name, "target": round(target, 4), "achieved": round(achieved, 4), "deviation": round(dev, 4)}
        )
        if dev > spec.share_tolerance:
            bad.append(f"{name} {achieved:.3f} vs target {target:.3f}")
    passed = not bad and total > 0
    desc = (
        f"every source within ±{spec.share_tolerance} of its target share"
        if passed
        else f"token shares off target by more than {spec.share_tolerance}: {'; '.join(bad) or 'empty mixture'}"
    )
    return Verdict(
        passed,
        desc,
        {
            "mixture_version": summary["version"],
            "tolerance": spec.share_tolerance,
            "tokens": int(total),
            "max_deviation": max((r["deviation"] for r in rows), default=0.0),
            "shares": markdown_table(rows, ["source", "target", "achieved", "deviation"]),
        },
    )


def mixture_texts(storage: Storage, recipe: str) -> Iterator[tuple[str, str]]:
    """(doc_id, text) of every manifest document, read from the upstream stage rows and checked by sha256."""
    m = read_manifest(storage, recipe, columns=["doc_id", "stage", "drop", "record_id", "text_sha256"])
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in m.to_pylist():
        groups.setdefault((r["stage"], r["drop"]), []).append(r)
    for (stage, drop), rows in sorted(groups.items()):
        key = DOC_KEY[stage]
        t = read_stage_table(storage, stage, drop, columns=[key, TEXT_COLUMN[stage]])
        wanted = pa.array([doc_key(r["doc_id"]) for r in rows], pa.string())
        t = t.filter(pc.is_in(t[key], value_set=wanted))
        text_of = dict(zip(t[key].to_pylist(), t[TEXT_COLUMN[stage]].to_pylist(), strict=True))
        for r in rows:
            text = text_of.get(doc_key(r["doc_id"]))
            if text is None or hashlib.sha256(text.encode("utf-8")).hexdigest() != r["text_sha256"]:
                raise ValueError(f"{r['doc_id']}: {stage}[{drop}] row missing or changed since the mixture was built")
            yield r["doc_id"], text


def decontamination_verdict(storage: Storage, recipe: str) -> Verdict:
    """Whether the mixture's n-gram overlap with every eval set stays below the recipe's threshold."""
    spec = _recipe_of(storage, recipe)
    summary = read_summary(storage, recipe)
    eval_sets = {
        name: storage.read_bytes(mixture_uri(storage, recipe, EVALSETS_DIR, f"{name}.txt")).decode("utf-8")
        for name in spec.eval_sets
    }
    d = spec.decontamination
    report = contamination(mixture_texts(storage, recipe), eval_sets, d.ngram, d.max_overlap)
    worst = max(report.eval_sets, key=lambda e: e.overlap)
    desc = (
        f"{d.ngram}-gram overlap ≤ {d.max_overlap} for every eval set (worst {worst.name}: {worst.overlap:.4f})"
        if report.passed
        else f"{worst.name}: {worst.found} of its {worst.ngrams} {d.ngram}-grams ({worst.overlap:.2%}) occur in the "
        f"mixture, above {d.max_overlap}; contaminated documents include {', '.join(worst.example_docs)}. Remove them "
        "upstream or tighten the recipe's filters, then rebuild."
    )
    return Verdict(
        report.passed,
        desc,
        {
            "mixture_version": summary["version"],
            "ngram": d.ngram,
            "max_overlap": d.max_overlap,
            "worst_overlap": round(report.worst, 6),
            "eval_sets": markdown_table(
                report.rows(), ["eval_set", "ngrams", "found_in_mixture", "overlap", "docs_hit", "example_docs"]
            ),
        },
    )


def lineage_verdict(storage: Storage, recipe: str) -> Verdict:
    """Whether every manifest row resolves to its raw_crawl record."""
    summary = read_summary(storage, recipe)
    checked, problems = unresolved_manifest_rows(storage, recipe)
    desc = (
        f"all {checked} manifest rows resolve to raw_crawl records"
        if not problems
        else (
            f"{len(problems)} of {checked} manifest rows do not resolve to raw_crawl: {'; '.join(problems[:3])}. "
            "Re-materialize raw_crawl for those drops or rebuild the mixture."
        )
    )
    return Verdict(
        not problems and checked > 0,
        desc,
        {
            "mixture_version": summary["version"],
            "rows": checked,
            "unresolved": len(problems),
            "unresolved_sample": "\n".join(problems[:10]) or "none",
        },
    )
