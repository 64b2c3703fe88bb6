"""The recipe leaderboard: each recipe at its best learning rate, and a stability verdict per recipe pair and eval set.

Per (recipe, eval set, learning rate): mean and sample standard deviation of bits per byte over seeds (lower is
better). A recipe's best learning rate is the one with the lowest per-seed average over eval sets; the recipe
is reported there, as data ablations do. For two recipes and one eval set the order is **stable** only if

1. the order is the same at every learning rate both recipes were trained at;
2. the gap at the best learning rates exceeds the seed noise, t·sqrt(s_a²/n_a + s_b²/n_b), with t the 97.5%
   quantile of Student's t at n_a + n_b - 2 degrees of freedom: a two-sided 5% two-sample t test (with the equal
   seed counts of a grid this is Student's pooled test). t is 4.30 with 2 seeds a side and 2.78 with 3; a fixed
   2 called seed noise a difference on a 2-seed grid;
3. a paired bootstrap over eval documents (each document's NLL averaged over seeds, documents resampled
   `BOOTSTRAP_RESAMPLES` times from `BOOTSTRAP_SEED`) gives a 95% interval of the gap that excludes 0.

Otherwise the verdict is "no difference" and no winner is named. The noise floor of an eval set is the pooled
seed std at the best learning rates and the smallest difference the grid can detect, t·sqrt(2·s²/n) with t at
2n - 2 degrees of freedom; a gap below it is "undetectable at this budget".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pyarrow as pa

from mmrecipe.stage_output import markdown_table

AVERAGE = "average"  # the per-seed mean over eval sets, then mean ± std over seeds
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
STABLE, NO_DIFFERENCE = "stable", "no difference"
RULE = (
    "stable iff the order holds at every learning rate, |Δ| > t·sqrt(s_a²/n_a + s_b²/n_b) (s = sample std over "
    "seeds, t = Student's 97.5% quantile at n_a + n_b - 2 degrees of freedom) and a paired bootstrap over eval "
    f"documents ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}) "
    "gives a 95% CI of Δ excluding 0; otherwise no difference. Lower bpb is better"
)


@dataclass(frozen=True)
class Score:
    """One recipe's score on one eval set at one learning rate: mean and sample std of bits per byte over seeds."""

    recipe: str
    eval_set: str
    lr: float
    n: int
    mean: float
    std: float

    def cell(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f}" if self.n > 1 else f"{self.mean:.4f} (1 seed)"


@dataclass(frozen=True)
class Floor:
    """The noise floor of an eval set: pooled seed std at the best learning rates, and the smallest detectable gap."""

    eval_set: str
    seed_std: float
    seeds: int
    detectable: float  # t(2n - 2)·sqrt(2·s²/n); inf without two seeds


@dataclass(frozen=True)
class Pair:
    """Two recipes on one eval set: the gap at their best learning rates and whether its order is stable."""

    eval_set: str
    better: str  # the lower mean at the best learning rates (a winner only when `stable`)
    worse: str
    delta: float  # worse - better, >= 0
    noise: float
    per_lr: dict[float, float]  # worse - better at each shared learning rate
    ci: tuple[float, float] | None  # bootstrap 95% interval of the gap; None without per-document losses
    detectable: float

    @property
    def same_order(self) -> bool:
        return bool(self.per_lr) and (
            all(d > 0 for d in self.per_lr.values()) or all(d < 0 for d in self.per_lr.values())
        )

    @property
    def beyond_noise(self) -> bool:
        return math.isfinite(self.noise) and self.delta > self.noise

    @property
    def ci_excludes_zero(self) -> bool:
        return self.ci is not None and (self.ci[0] > 0 or self.ci[1] < 0)

    @property
    def stable(self) -> bool:
        return self.same_order and self.beyond_noise and self.ci_excludes_zero

    def verdict(self) -> str:
        """`stable: X better`, or `no difference` with every rule that failed."""
        if self.stable:
            return f"{STABLE}: {self.better} better"
        why = []
        if not self.same_order:
            why.append("order changes with the learning rate" if self.per_lr else "no shared learning rate")
        if not self.beyond_noise:
            small = not math.isfinite(self.detectable) or self.delta <= self.detectable
            why.append("undetectable at this budget" if small else "within seed noise")
        if not self.ci_excludes_zero:
            why.append("bootstrap CI includes 0" if self.ci else "no per-document losses")
        return f"{NO_DIFFERENCE} ({'; '.join(why)})"


@dataclass
class Ranking:
    """Every score, each recipe's best learning rate, the pair verdicts and the noise floor per eval set."""

    scores: list[Score]
    best_lr: dict[str, float]
    pairs: list[Pair]
    floors: list[Floor]

    @property
    def reported(self) -> list[Score]:
        """The scores at each recipe's best learning rate."""
        return [s for s in self.scores if s.lr == self.best_lr[s.recipe]]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def scores(results: pa.Table) -> list[Score]:
    """Mean ± std per (recipe, eval set, lr) from rows (recipe, seed, lr, eval_set, bpb), plus the per-seed average."""
    per: dict[tuple[str, str, float], dict[int, float]] = {}
    for r in results.select(["recipe", "seed", "lr", "eval_set", "bpb"]).to_pylist():
        per.setdefault((r["recipe"], r["eval_set"], float(r["lr"])), {})[int(r["seed"])] = float(r["bpb"])
    by_run: dict[tuple[str, float, int], list[float]] = {}
    for (recipe, _, lr), seeds in per.items():
        for seed, v in seeds.items():
            by_run.setdefault((recipe, lr, seed), []).append(v)
    for (recipe, lr, seed), vals in by_run.items():
        per.setdefault((recipe, AVERAGE, lr), {})[seed] = float(np.mean(vals))
    return [
        Score(recipe, eval_set, lr, len(seeds), *_mean_std([seeds[s] for s in sorted(seeds)]))
        for (recipe, eval_set, lr), seeds in sorted(per.items())
    ]


def best_learning_rates(all_scores: Sequence[Score]) -> dict[str, float]:
    """Each recipe's learning rate with the lowest average bits per byte (ties: the smaller learning rate)."""
    averages = sorted((s.mean, s.lr, s.recipe) for s in all_scores if s.eval_set == AVERAGE)
    best: dict[str, float] = {}
    for _, lr, recipe in averages:
        best.setdefault(recipe, lr)
    return best


def t_quantile(df: float) -> float:
    """Student's t 97.5% quantile at `df` degrees of freedom: the two-sided 5% critical value."""
    from scipy import stats  # here, not at import: the code location loads no scipy (test_layering)

    return float(stats.t.ppf(0.975, df))


def noise(a: Score, b: Score) -> float:
    """The seed-noise threshold of a difference between two scores (inf without two seeds on each side)."""
    if a.n < 2 or b.n < 2:
        return math.inf
    return t_quantile(a.n + b.n - 2) * math.sqrt(a.std**2 / a.n + b.std**2 / b.n)


def noise_floors(reported: Sequence[Score]) -> list[Floor]:
    """Per eval set: the pooled seed std of the reported scores and the smallest gap the grid can detect."""
    out = []
    for eval_set in sorted({s.eval_set for s in reported} - {AVERAGE}):
        group = [s for s in reported if s.eval_set == eval_set and s.n > 1]
        if not group:
            out.append(Floor(eval_set, math.nan, 1, math.inf))
            continue
        var, n = float(np.mean([s.std**2 for s in group])), min(s.n for s in group)
        out.append(Floor(eval_set, math.sqrt(var), n, t_quantile(2 * n - 2) * math.sqrt(2.0 * var / n)))
    return out


def _doc_vectors(doc_losses: pa.Table) -> dict[tuple[str, str, float], tuple[np.ndarray, np.ndarray]]:
    """(recipe, eval set, lr) -> (NLL bits per document averaged over seeds, bytes per document)."""
    acc: dict[tuple[str, str, float], dict[int, list[float]]] = {}
    size: dict[tuple[str, str, float], dict[int, int]] = {}
    for r in doc_losses.select(["recipe", "eval_set", "lr", "doc", "nll_bits", "utf8_bytes"]).to_pylist():
        key = (r["recipe"], r["eval_set"], float(r["lr"]))
        acc.setdefault(key, {}).setdefault(r["doc"], []).append(r["nll_bits"])
        size.setdefault(key, {})[r["doc"]] = r["utf8_bytes"]
    return {
        k: (np.array([np.mean(docs[d]) for d in sorted(docs)]), np.array([size[k][d] for d in sorted(docs)]))
        for k, docs in acc.items()
    }


def bootstrap_ci(
    better: tuple[np.ndarray, np.ndarray], worse: tuple[np.ndarray, np.ndarray]
) -> tuple[float, float] | None:
    """95% percentile interval of bpb(worse) - bpb(better) over eval documents resampled with replacement.

    Both sides must be scored on the same documents (equal byte counts); otherwise there is no paired interval.
    """
    (nll_a, bytes_a), (nll_b, bytes_b) = better, worse
    if len(bytes_a) != len(bytes_b) or not len(bytes_a) or not np.array_equal(bytes_a, bytes_b):
        return None
    idx = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(bytes_a), size=(BOOTSTRAP_RESAMPLES, len(bytes_a)))
    total = bytes_a[idx].sum(axis=1)
    gaps = (nll_b[idx].sum(axis=1) - nll_a[idx].sum(axis=1)) / total
    lo, hi = np.percentile(gaps, [2.5, 97.5])
    return float(lo), float(hi)


def rank(results: pa.Table, doc_losses: pa.Table) -> Ranking:
    """The leaderboard's statistics from result rows and per-document losses (module docstring: the rules)."""
    all_scores = scores(results) if results.num_rows else []
    best = best_learning_rates(all_scores)
    reported = [s for s in all_scores if s.lr == best[s.recipe]]
    floors = {f.eval_set: f for f in noise_floors(reported)}
    docs = _doc_vectors(doc_losses)
    at = {(s.recipe, s.eval_set, s.lr): s for s in all_scores}
    pairs = []
    for eval_set, floor in sorted(floors.items()):
        group = sorted((s for s in reported if s.eval_set == eval_set), key=lambda s: (s.mean, s.recipe))
        for a, b in combinations(group, 2):
            shared = sorted(
                {lr for r, e, lr in at if r == a.recipe and e == eval_set}
                & {lr for r, e, lr in at if r == b.recipe and e == eval_set}
            )
            per_lr = {lr: at[(b.recipe, eval_set, lr)].mean - at[(a.recipe, eval_set, lr)].mean for lr in shared}
            va, vb = docs.get((a.recipe, eval_set, a.lr)), docs.get((b.recipe, eval_set, b.lr))
            ci = bootstrap_ci(va, vb) if va is not None and vb is not None else None
            pairs.append(Pair(eval_set, a.recipe, b.recipe, b.mean - a.mean, noise(a, b), per_lr, ci, floor.detectable))
    return Ranking(all_scores, best, pairs, list(floors.values()))


def _g(x: float) -> str:
    return f"{x:.4f}" if math.isfinite(x) else "n/a (<2 seeds)"


def leaderboard_markdown(ranking: Ranking, header: Sequence[str] = ()) -> str:
    """The leaderboard as markdown: header, scores at the best learning rates, noise floors and pair verdicts."""
    if not ranking.scores:
        return "No eval_results yet: materialize eval_results for at least one recipe."
    reported = ranking.reported
    eval_sets = [*sorted({s.eval_set for s in reported} - {AVERAGE}), AVERAGE]
    mean_of = {(s.recipe, s.eval_set): s for s in reported}
    recipes = sorted(ranking.best_lr, key=lambda r: (mean_of[(r, AVERAGE)].mean, r))
    table = [
        {"recipe": r, "best lr": f"{ranking.best_lr[r]:g}", "seeds": mean_of[(r, AVERAGE)].n}
        | {e: mean_of[(r, e)].cell() if (r, e) in mean_of else "–" for e in eval_sets}
        for r in recipes
    ]
    floors = [
        {
            "eval_set": f.eval_set,
            "seed std": _g(f.seed_std),
            "seeds": f.seeds,
            "smallest detectable Δ": _g(f.detectable),
        }
        for f in ranking.floors
    ]
    pairs = [
        {
            "eval_set": p.eval_set,
            "pair": f"{p.better} vs {p.worse}",
            "Δ bpb": f"{p.delta:.4f}",
            "seed noise (t·SE)": _g(p.noise),
            "Δ per lr": ", ".join(f"{lr:g}: {d:+.4f}" for lr, d in sorted(p.per_lr.items())) or "–",
            "95% CI": f"[{p.ci[0]:+.4f}, {p.ci[1]:+.4f}]" if p.ci else "n/a",
            "verdict": p.verdict(),
        }
        for p in ranking.pairs
    ]
    parts = [
        "## Leaderboard: bits per byte on held-out eval sets (lower is better)",
        "",
        *[f"- {line}" for line in header],
        *([""] if header else []),
        "Each recipe at its best learning rate (mean ± seed std):",
        "",
        markdown_table(table, ["recipe", "best lr", "seeds", *eval_sets], max_chars=40),
        "",
        "Noise floor (a change smaller than the smallest detectable Δ is undetectable at this budget):",
        "",
        markdown_table(floors, ["eval_set", "seed std", "seeds", "smallest detectable Δ"]),
        "",
        f"Rule: {RULE}.",
        "",
    ]
    if pairs:
        cols = ["eval_set", "pair", "Δ bpb", "seed noise (t·SE)", "Δ per lr", "95% CI", "verdict"]
        parts += [markdown_table(pairs, cols, max_chars=60), ""]
    return "\n".join(parts)
