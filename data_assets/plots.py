"""The project's PNG charts: drop reasons, score histograms, the leaderboard and loss curves.

Each helper renders a matplotlib `Figure` (no pyplot: no global backend state, no display) to a compact
PNG and returns `dg.MetadataValue.md("![title](data:image/png;base64,…)")`, which the Dagster UI renders.
The PNG bytes are deterministic: the same data gives the same image (no timestamp or version in it).
"""

from __future__ import annotations

import base64
import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import dagster as dg
import pyarrow as pa

from mmrecipe.proxy_eval.leaderboard import AVERAGE, Score

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGSIZE = (5.0, 2.6)
DPI = 80
MAX_BARS = 15
COLOR = "#4f43dd"
THRESHOLD_COLOR = "#cc3311"


def png_md(png: bytes, title: str) -> dg.MetadataValue:
    """A PNG as inline markdown (a data-URI image the Dagster UI renders)."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})")


def new_figure(figsize: tuple[float, float]) -> Figure:
    """An empty matplotlib figure; matplotlib (~0.7 CPU-s to import) loads with the first chart, not the Definitions."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """A figure as deterministic PNG bytes (no software/version stamp)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def figure_md(fig: Figure, title: str) -> dg.MetadataValue:
    """A figure as an inline markdown image."""
    return png_md(figure_png(fig), title)


def bar_chart_md(counts: Mapping[str, int], title: str, xlabel: str = "count") -> dg.MetadataValue:
    """Horizontal bars of the `MAX_BARS` largest counts (e.g. drop reasons), largest on top."""
    top = Counter({str(k): int(v) for k, v in counts.items()}).most_common(MAX_BARS)
    top.sort(key=lambda kv: (kv[1], kv[0]))  # ascending, so barh draws the largest last = on top
    fig = new_figure((FIGSIZE[0], max(1.4, 0.32 * len(top) + 0.9)))
    ax = fig.subplots()
    labels, values = [k for k, _ in top], [v for _, v in top]
    ax.barh(labels, values, color=COLOR)
    for y, v in enumerate(values):
        ax.annotate(str(v), (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    if not top:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.margins(x=0.15)
    return figure_md(fig, title)


def histogram_chart_md(
    values: Sequence[float],
    title: str,
    xlabel: str,
    bins: int = 20,
    value_range: tuple[float, float] | None = None,
    threshold: float | None = None,
    weights: Sequence[int] | None = None,
) -> dg.MetadataValue:
    """A histogram of numeric values (e.g. quality scores), a drop threshold dashed; NaNs are left out.

    With `weights`, `values` are bin centres and `weights` their counts (a histogram summed elsewhere)."""
    clean = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if weights is not None and len(weights) != len(clean):
        raise ValueError(f"histogram {title!r}: {len(weights)} weights for {len(clean)} values")
    fig = new_figure(FIGSIZE)
    ax = fig.subplots()
    if clean:
        ax.hist(clean, bins=bins, range=value_range, color=COLOR, weights=weights)
    else:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    if threshold is not None:
        ax.axvline(threshold, color=THRESHOLD_COLOR, linestyle="--", label=f"threshold {threshold:.3f}")
        ax.legend(fontsize=7)
    ax.set_title(f"{title} (n={len(clean) if weights is None else int(sum(weights))})", fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("count", fontsize=8)
    ax.tick_params(labelsize=8)
    return figure_md(fig, title)


def leaderboard_png(all_scores: Sequence[Score]) -> bytes:
    """A grouped bar chart of mean bpb per eval set and recipe, with ±1 std error bars."""
    eval_sets = [*sorted({s.eval_set for s in all_scores} - {AVERAGE}), AVERAGE]
    recipes = sorted({s.recipe for s in all_scores})
    fig = new_figure((7, 3.5))
    ax = fig.subplots()
    width = 0.8 / max(1, len(recipes))
    for k, recipe in enumerate(recipes):
        got = [next((s for s in all_scores if s.recipe == recipe and s.eval_set == e), None) for e in eval_sets]
        xs = [i + k * width for i, s in enumerate(got) if s]
        ax.bar(xs, [s.mean for s in got if s], width, yerr=[s.std for s in got if s], capsize=3, label=recipe)
    ax.set_xticks([i + width * (len(recipes) - 1) / 2 for i in range(len(eval_sets))], eval_sets)
    ax.set_ylabel("bits per byte (lower is better)")
    ax.legend(fontsize=8)
    return figure_png(fig, dpi=100)


def loss_curve_png(curves: pa.Table, title: str) -> bytes:
    """Training loss against tokens seen, one line per run, from rows (seed, peak_lr, tokens_seen, loss)."""
    fig = new_figure((6, 3.2))
    ax = fig.subplots()
    rows = curves.select(["seed", "peak_lr", "tokens_seen", "loss"]).to_pylist()
    for lr, seed in sorted({(r["peak_lr"], r["seed"]) for r in rows}):
        pts = [(r["tokens_seen"], r["loss"]) for r in rows if r["seed"] == seed and r["peak_lr"] == lr]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"lr {lr:g} seed {seed}")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("train loss (nats/token)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return figure_png(fig, dpi=100)
