"""The chart helpers: real PNGs inline in markdown metadata, deterministic, drawing what they are given."""

import base64
import io
import re

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from data_assets.plots import COLOR, bar_chart_md, histogram_chart_md

BAR_RGB = tuple(int(COLOR[i : i + 2], 16) for i in (1, 3, 5))


def _png(md: dg.MetadataValue) -> Image.Image:
    match = re.fullmatch(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md.value)
    assert match, md.value[:80]
    data = base64.b64decode(match.group(1))
    assert data.startswith(b"\x89PNG") and len(data) < 60_000  # small enough for the event log
    return Image.open(io.BytesIO(data)).convert("RGB")


def _bar_pixels_per_row(img: Image.Image) -> list[int]:
    """For each pixel row, how many pixels have the bar colour."""
    arr = np.asarray(img).astype(int)
    mask = np.abs(arr - np.array(BAR_RGB)).sum(axis=2) < 30
    return mask.sum(axis=1).tolist()


def test_bar_chart_bar_lengths_are_proportional_to_counts() -> None:
    img = _png(bar_chart_md({"too_short": 100, "non_english": 50, "pii": 25}, "drop reasons"))
    widths = [w for w in _bar_pixels_per_row(img) if w > 0]
    # three bars: the distinct plateau widths of the bar rows, largest first
    plateaus = sorted({w for w in widths if widths.count(w) >= 5}, reverse=True)
    assert len(plateaus) == 3, plateaus
    assert plateaus[0] / plateaus[1] == pytest.approx(2, rel=0.05)
    assert plateaus[0] / plateaus[2] == pytest.approx(4, rel=0.08)


def test_bar_chart_keeps_only_the_largest_reasons_and_is_deterministic() -> None:
    counts = {f"reason_{i:02d}": i + 1 for i in range(30)}
    first, again = bar_chart_md(counts, "drop reasons"), bar_chart_md(dict(reversed(counts.items())), "drop reasons")
    assert first.value == again.value  # same data, same bytes (no timestamp, stable order)
    tall = _png(first).height
    assert tall == _png(bar_chart_md(dict(list(counts.items())[-15:]), "drop reasons")).height  # capped at 15 bars


def test_histogram_renders_what_it_is_given_and_marks_the_threshold() -> None:
    scores = [i / 100 for i in range(100)] + [float("nan")]
    hist = _png(histogram_chart_md(scores, "quality", "score", bins=10, value_range=(0, 1)))
    empty = _png(histogram_chart_md([], "quality", "score"))
    assert sum(_bar_pixels_per_row(empty)) == 0 and sum(_bar_pixels_per_row(hist)) > 5_000
    marked = _png(histogram_chart_md(scores, "quality", "score", bins=10, value_range=(0, 1), threshold=0.3))
    # the only reddish pixels are the threshold line and its legend

    def reddish(img: Image.Image) -> int:
        arr = np.asarray(img).astype(int)
        return int((arr[:, :, 0] - np.maximum(arr[:, :, 1], arr[:, :, 2]) > 60).sum())

    assert reddish(hist) == 0 and reddish(marked) > 50
    assert hist.size == marked.size == (400, 208)
