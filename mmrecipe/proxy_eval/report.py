"""The published leaderboard: `<lake>/leaderboard/{leaderboard.md, leaderboard.png, scores.parquet, pairs.parquet}`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from mmrecipe.proxy_eval.evaluate import read_all_results
from mmrecipe.proxy_eval.leaderboard import Ranking, Score, leaderboard_markdown, rank
from mmrecipe.proxy_eval.presets import scale_label
from mmrecipe.storage import Storage

LEADERBOARD = "leaderboard"
SCORES_SCHEMA = pa.schema(
    [
        pa.field("recipe", pa.string(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("lr", pa.float64(), nullable=False),
        pa.field("best_lr", pa.bool_(), nullable=False),
        pa.field("seeds", pa.int64(), nullable=False),
        pa.field("bpb_mean", pa.float64(), nullable=False),
        pa.field("bpb_std", pa.float64(), nullable=False),
    ]
)
PAIRS_SCHEMA = pa.schema(
    [
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("better", pa.string(), nullable=False),
        pa.field("worse", pa.string(), nullable=False),
        pa.field("delta_bpb", pa.float64(), nullable=False),
        pa.field("seed_noise", pa.float64(), nullable=False),
        pa.field("ci_low", pa.float64()),
        pa.field("ci_high", pa.float64()),
        pa.field("stable", pa.bool_(), nullable=False),
        pa.field("verdict", pa.string(), nullable=False),
    ]
)


@dataclass
class Leaderboard:
    """A computed leaderboard and where it was written."""

    recipes: list[str]
    ranking: Ranking
    markdown: str
    png: bytes
    markdown_uri: str
    scores_uri: str


def budget_header(results: pa.Table) -> list[str]:
    """One line per eval config: the recipes, the grid, tokens per seed, model size, scale, device and dtype."""
    groups: dict[tuple, set[str]] = {}
    seeds: dict[tuple, set[int]] = {}
    lrs: dict[tuple, set[float]] = {}
    cols = ["recipe", "eval_config", "tokens_seen", "parameters", "device", "dtype", "seed", "lr"]
    for r in results.select(cols).to_pylist():
        key = (r["eval_config"], r["tokens_seen"], r["parameters"], r["device"], r["dtype"])
        groups.setdefault(key, set()).add(r["recipe"])
        seeds.setdefault(key, set()).add(r["seed"])
        lrs.setdefault(key, set()).add(r["lr"])
    return [
        f"eval config {config} ({', '.join(sorted(groups[key]))}): {len(seeds[key])} seeds x {len(lrs[key])} "
        f"learning rates ({', '.join(f'{lr:g}' for lr in sorted(lrs[key]))}); {tokens:,} tokens per seed; "
        f"model {params / 1e6:.2f}M parameters; scale {scale_label(tokens, params)}; {device} {dtype}"
        for key in sorted(groups)
        for config, tokens, params, device, dtype in [key]
    ]


def compute_leaderboard(storage: Storage, recipes: Sequence[str]) -> tuple[list[str], Ranking, str]:
    """(recipes with results, their ranking, markdown) from the eval results in the lake."""
    results = read_all_results(storage, recipes)
    ranking = rank(results, read_all_results(storage, recipes, "doc_losses.parquet"))
    return sorted(ranking.best_lr), ranking, leaderboard_markdown(ranking, budget_header(results))


def pairs_table(ranking: Ranking) -> pa.Table:
    """The pair verdicts of a ranking as a table."""
    rows = [
        {"eval_set": p.eval_set, "better": p.better, "worse": p.worse, "delta_bpb": p.delta, "seed_noise": p.noise}
        | {"ci_low": p.ci[0] if p.ci else None, "ci_high": p.ci[1] if p.ci else None}
        | {"stable": p.stable, "verdict": p.verdict()}
        for p in ranking.pairs
    ]
    return pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA)


def write_leaderboard(
    storage: Storage, recipes: Sequence[str], plot: Callable[[Sequence[Score]], bytes] | None = None
) -> Leaderboard:
    """Compute the leaderboard over `recipes`; write its markdown, scores, pair verdicts and `plot`'s PNG."""
    names, ranking, md = compute_leaderboard(storage, recipes)
    png = plot(ranking.reported) if plot and ranking.scores else b""
    md_uri = storage.uri(LEADERBOARD, "leaderboard.md")
    scores_uri = storage.uri(LEADERBOARD, "scores.parquet")
    table = pa.Table.from_pylist(
        [
            {"recipe": s.recipe, "eval_set": s.eval_set, "lr": s.lr, "best_lr": s.lr == ranking.best_lr[s.recipe]}
            | {"seeds": s.n, "bpb_mean": s.mean, "bpb_std": s.std}
            for s in ranking.scores
        ],
        schema=SCORES_SCHEMA,
    )
    storage.write_table(scores_uri, table)
    storage.write_table(storage.uri(LEADERBOARD, "pairs.parquet"), pairs_table(ranking))
    link = ""
    if png:  # the file links the plot beside it; the returned markdown has no link (the UI embeds the PNG itself)
        storage.write_bytes(storage.uri(LEADERBOARD, "leaderboard.png"), png)
        link = "\n![bits per byte by recipe](leaderboard.png)\n"
    storage.write_bytes(md_uri, (md + link).encode("utf-8"))
    return Leaderboard(names, ranking, md, png, md_uri, scores_uri)


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
    _, ranking, _ = compute_leaderboard(storage, [recipe])
    for score in ranking.reported:
        lines.append(f"  bits per byte {score.eval_set:<14} {score.cell()}  (lr {score.lr:g})")
    version = latest_release(storage, recipe)
    lines.append(f"  release: {storage.uri('releases', recipe, version) if version else 'not released'}")
    return "\n".join(lines)
