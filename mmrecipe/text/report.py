"""Summaries of a text partition for humans: score histograms as rows of (range, count)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def score_histogram(scores: Sequence[float], bins: int = 10) -> list[dict[str, object]]:
    """Rows of (score range, count) over [0, 1] in `bins` equal bins."""
    counts, edges = np.histogram(np.asarray(scores, dtype=np.float64), bins=bins, range=(0.0, 1.0))
    return [{"score": f"{edges[i]:.1f}–{edges[i + 1]:.1f}", "count": int(c)} for i, c in enumerate(counts)]
