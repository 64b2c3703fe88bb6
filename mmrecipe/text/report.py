"""Summaries of a text partition for humans: score histograms as markdown rows and as an embedded PNG."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np


def score_histogram(scores: Sequence[float], bins: int = 10) -> list[dict[str, object]]:
    """Rows of (score range, count) over [0, 1] in `bins` equal bins."""
    counts, edges = np.histogram(np.asarray(scores, dtype=np.float64), bins=bins, range=(0.0, 1.0))
    return [{"score": f"{edges[i]:.1f}–{edges[i + 1]:.1f}", "count": int(c)} for i, c in enumerate(counts)]


def histogram_png_markdown(scores: Sequence[float], title: str, threshold: float | None = None) -> str:
    """A markdown image (PNG data URI) of a score histogram, with the drop threshold as a vertical line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 2.4), dpi=80)
    ax.hist(np.asarray(scores, dtype=np.float64), bins=20, range=(0.0, 1.0), color="#4477aa")
    if threshold is not None:
        ax.axvline(threshold, color="#cc3311", linestyle="--", label=f"threshold {threshold:.3f}")
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("P(high quality)", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def score_histogram_markdown(scores: Sequence[float], title: str, threshold: float | None = None) -> str:
    """A markdown table of the score histogram followed by its embedded PNG plot."""
    from mmrecipe.stage_output import markdown_table

    table = markdown_table(score_histogram(scores), ["score", "count"])
    return table + "\n\n" + histogram_png_markdown(scores, title, threshold)
