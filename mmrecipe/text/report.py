"""Summaries of a text partition for humans: score histograms as rows of (range, count)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def score_histogram(counts: Sequence[int], rows: int = 10) -> list[dict[str, object]]:
    """Rows of (score range, count) over [0, 1] in `rows` equal bins, from counts in a multiple of that many bins."""
    merged = np.asarray(counts, dtype=np.int64).reshape(rows, -1).sum(axis=1)
    edges = np.linspace(0.0, 1.0, rows + 1)
    return [{"score": f"{edges[i]:.1f}–{edges[i + 1]:.1f}", "count": int(c)} for i, c in enumerate(merged)]
