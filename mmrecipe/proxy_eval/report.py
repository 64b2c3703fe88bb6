"""The published leaderboard: `<lake>/leaderboard/{leaderboard.md, leaderboard.png, scores.parquet}`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from mmrecipe.proxy_eval.evaluate import read_all_results
from mmrecipe.proxy_eval.leaderboard import (
    Comparison,
    Score,
    comparisons,
    leaderboard_markdown,
    scores,
)
from mmrecipe.storage import Storage

LEADERBOARD = "leaderboard"
SCORES_SCHEMA = pa.schema(
    [
        pa.field("recipe", pa.string(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("seeds", pa.int64(), nullable=False),
        pa.field("bpb_mean", pa.float64(), nullable=False),
        pa.field("bpb_std", pa.float64(), nullable=False),
    ]
)


@dataclass
class Leaderboard:
    """A computed leaderboard and where it was written."""

    recipes: list[str]
    scores: list[Score]
    comparisons: list[Comparison]
    markdown: str
    png: bytes
    markdown_uri: str
    scores_uri: str


def compute_leaderboard(storage: Storage, recipes: Sequence[str]) -> tuple[list[str], list[Score], str]:
    """(recipes with results, scores, markdown) from the eval results in the lake."""
    results = read_all_results(storage, recipes)
    all_scores = scores(results) if results.num_rows else []
    configs: dict[str, set[str]] = {}
    for row in results.select(["recipe", "eval_config"]).to_pylist():
        configs.setdefault(row["eval_config"] or "unrecorded", set()).add(row["recipe"])
    header = "; ".join(f"{c} ({', '.join(sorted(r))})" for c, r in sorted(configs.items()))
    md = (f"Eval config: {header}\n\n" if header else "") + leaderboard_markdown(all_scores)
    return sorted({s.recipe for s in all_scores}), all_scores, md


def write_leaderboard(
    storage: Storage, recipes: Sequence[str], plot: Callable[[Sequence[Score]], bytes] | None = None
) -> Leaderboard:
    """Compute the leaderboard over `recipes` and write its markdown, scores table and `plot`'s PNG to the lake."""
    names, all_scores, md = compute_leaderboard(storage, recipes)
    png = plot(all_scores) if plot and all_scores else b""
    md_uri = storage.uri(LEADERBOARD, "leaderboard.md")
    scores_uri = storage.uri(LEADERBOARD, "scores.parquet")
    table = pa.Table.from_pylist(
        [
            {"recipe": s.recipe, "eval_set": s.eval_set, "seeds": s.n, "bpb_mean": s.mean, "bpb_std": s.std}
            for s in all_scores
        ],
        schema=SCORES_SCHEMA,
    )
    storage.write_table(scores_uri, table)
    link = ""
    if png:  # the file links the plot beside it; the returned markdown has no link (the UI embeds the PNG itself)
        storage.write_bytes(storage.uri(LEADERBOARD, "leaderboard.png"), png)
        link = "\n![bits per byte by recipe](leaderboard.png)\n"
    storage.write_bytes(md_uri, (md + link).encode("utf-8"))
    return Leaderboard(names, all_scores, comparisons(all_scores), md, png, md_uri, scores_uri)


def format_leaderboard(storage: Storage, recipes: Sequence[str]) -> str:
    """The leaderboard as text for the CLI, computed from the eval results currently in the lake."""
    return compute_leaderboard(storage, recipes)[2]


def recipe_report(storage: Storage, recipe: str) -> str:
    """A few lines on a built recipe: its mixture, shares, decontamination, bits per byte and release."""
    from mmrecipe.mixture.build import read_summary
    from mmrecipe.mixture.release import latest_release

    try:
        s = read_summary(storage, recipe)
    except FileNotFoundError as e:
        return str(e)
    lines = [
        f"mixture[{recipe}] version {s['version']}: {s['achieved_tokens']:,} tokens of a {s['total_tokens_budget']:,} "
        f"budget, {s['documents']} documents, {s['webdataset']['samples']} image-caption pairs",
    ]
    for src in s["sources"]:
        note = f"  ({src['note']})" if src["too_small"] else ""
        lines.append(
            f"  {src['name']:<16} share {src['achieved_share']:.3f} (target {src['target_share']:.3f}), "
            f"{src['epochs']:.2f} epochs{note}"
        )
    d = s["decontamination"]
    lines.append(
        f"  decontamination: worst {d['ngram']}-gram overlap {d['worst_overlap']:.4f} (max {d['max_overlap']})"
    )
    _, all_scores, _ = compute_leaderboard(storage, [recipe])
    for score in all_scores:
        lines.append(f"  bits per byte {score.eval_set:<14} {score.cell()}")
    version = latest_release(storage, recipe)
    lines.append(f"  release: {storage.uri('releases', recipe, version) if version else 'not released'}")
    return "\n".join(lines)
