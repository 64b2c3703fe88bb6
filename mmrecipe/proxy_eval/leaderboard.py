"""The recipe leaderboard: bits per byte per recipe and eval set, as mean ± seed standard deviation.

A difference between two recipes is called significant only when it exceeds the seed noise:

    |mean_a - mean_b| > 2 * sqrt(s_a^2 / n_a + s_b^2 / n_b)

(about a 95% two-sided z-interval on the difference of means, DataComp-style seed-noise reporting; s is
the sample standard deviation over seeds). With fewer than two seeds on either side there is no noise
estimate, so nothing is called significant. Lower bits per byte is better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mmrecipe.stage_output import markdown_table

AVERAGE = "average"  # the per-seed mean over eval sets, then mean ± std over seeds
RULE = "significant iff |Δmean| > 2·sqrt(s_a²/n_a + s_b²/n_b) (s = sample std over seeds); lower bpb is better"


@dataclass(frozen=True)
class Score:
    """One recipe's score on one eval set: mean and sample std of bits per byte over its seeds."""

    recipe: str
    eval_set: str
    n: int
    mean: float
    std: float

    def cell(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f}" if self.n > 1 else f"{self.mean:.4f} (1 seed)"


@dataclass(frozen=True)
class Comparison:
    """A recipe against the best recipe on one eval set."""

    eval_set: str
    best: str
    other: str
    delta: float
    noise: float

    @property
    def significant(self) -> bool:
        return math.isfinite(self.noise) and abs(self.delta) > self.noise


def scores(results: pa.Table) -> list[Score]:
    """Mean ± std per (recipe, eval set) from rows (recipe, seed, eval_set, bpb), plus the per-seed average."""
    rows = results.select(["recipe", "seed", "eval_set", "bpb"]).to_pylist()
    per: dict[tuple[str, str], dict[int, float]] = {}
    for r in rows:
        per.setdefault((r["recipe"], r["eval_set"]), {})[int(r["seed"])] = float(r["bpb"])
    by_recipe_seed: dict[tuple[str, int], list[float]] = {}
    for (recipe, _), seeds in per.items():
        for seed, v in seeds.items():
            by_recipe_seed.setdefault((recipe, seed), []).append(v)
    for (recipe, seed), vals in by_recipe_seed.items():
        per.setdefault((recipe, AVERAGE), {})[seed] = float(np.mean(vals))
    out = []
    for (recipe, eval_set), seeds in sorted(per.items()):
        v = np.array([seeds[s] for s in sorted(seeds)])
        out.append(Score(recipe, eval_set, len(v), float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0))
    return out


def noise(a: Score, b: Score) -> float:
    """The seed-noise threshold of a difference between two scores (inf without two seeds on each side)."""
    if a.n < 2 or b.n < 2:
        return math.inf
    return 2.0 * math.sqrt(a.std**2 / a.n + b.std**2 / b.n)


def comparisons(all_scores: Sequence[Score]) -> list[Comparison]:
    """Each recipe against the best (lowest mean bpb) recipe, per eval set."""
    out: list[Comparison] = []
    for eval_set in sorted({s.eval_set for s in all_scores}):
        group = sorted((s for s in all_scores if s.eval_set == eval_set), key=lambda s: (s.mean, s.recipe))
        best = group[0]
        out += [Comparison(eval_set, best.recipe, s.recipe, s.mean - best.mean, noise(best, s)) for s in group[1:]]
    return out


def leaderboard_markdown(all_scores: Sequence[Score]) -> str:
    """The leaderboard as markdown: a mean ± std table and the significance of each gap to the best."""
    if not all_scores:
        return "No eval_results yet: materialize eval_results for at least one recipe."
    eval_sets = [*sorted({s.eval_set for s in all_scores} - {AVERAGE}), AVERAGE]
    recipes = sorted({s.recipe for s in all_scores}, key=lambda r: _mean_of(all_scores, r, AVERAGE))
    table = []
    for recipe in recipes:
        row: dict[str, object] = {"recipe": recipe}
        for e in eval_sets:
            s = next((x for x in all_scores if x.recipe == recipe and x.eval_set == e), None)
            row[e] = s.cell() if s else "–"
            row["seeds"] = s.n if s else row.get("seeds", 0)
        table.append(row)
    comp = [
        {
            "eval_set": c.eval_set,
            "best": c.best,
            "vs": c.other,
            "Δ bpb": f"+{c.delta:.4f}",
            "seed noise (2σ)": f"{c.noise:.4f}" if math.isfinite(c.noise) else "n/a (<2 seeds)",
            "significant": "yes" if c.significant else "no",
        }
        for c in comparisons(all_scores)
    ]
    parts = [
        "## Leaderboard: bits per byte on held-out eval sets (lower is better)",
        "",
        markdown_table(table, ["recipe", "seeds", *eval_sets], max_chars=40),
        "",
        f"Rule: {RULE}.",
        "",
    ]
    if comp:
        parts += [markdown_table(comp, ["eval_set", "best", "vs", "Δ bpb", "seed noise (2σ)", "significant"]), ""]
    return "\n".join(parts)


def _mean_of(all_scores: Sequence[Score], recipe: str, eval_set: str) -> float:
    return next((s.mean for s in all_scores if s.recipe == recipe and s.eval_set == eval_set), math.inf)
