"""Leaderboard statistics: mean ± seed std, and significance only beyond the seed noise."""

import math

import pyarrow as pa
import pytest

from data_assets.plots import leaderboard_png
from mmrecipe.proxy_eval.leaderboard import AVERAGE, comparisons, leaderboard_markdown, noise, scores


def results(per_recipe: dict[str, dict[str, list[float]]]) -> pa.Table:
    rows = [
        {"recipe": r, "seed": i, "eval_set": e, "bpb": v}
        for r, sets in per_recipe.items()
        for e, vals in sets.items()
        for i, v in enumerate(vals)
    ]
    return pa.Table.from_pylist(rows)


@pytest.mark.parametrize(
    ("a", "b", "expected_noise", "significant"),
    [
        ([1.00, 1.01, 0.99], [1.50, 1.51, 1.49], 2 * math.sqrt(2 * 0.01**2 / 3), True),  # gap 0.50 vs noise 0.016
        ([1.00, 1.20, 0.80], [1.05, 1.25, 0.85], 2 * math.sqrt(2 * 0.2**2 / 3), False),  # gap 0.05 vs noise 0.33
        ([1.00, 1.02, 0.98], [1.03, 1.05, 1.01], 2 * math.sqrt(2 * 0.02**2 / 3), False),  # gap 0.030 < noise 0.0327
        ([1.00, 1.02, 0.98], [1.04, 1.06, 1.02], 2 * math.sqrt(2 * 0.02**2 / 3), True),  # gap 0.040 > noise 0.0327
        ([1.00], [2.00], math.inf, False),  # one seed each: no noise estimate, never significant
    ],
)
def test_significance_needs_the_gap_to_exceed_seed_noise(
    a: list[float], b: list[float], expected_noise: float, significant: bool
) -> None:
    all_scores = scores(results({"a": {"e": a}, "b": {"e": b}}))
    sa, sb = (next(s for s in all_scores if s.recipe == r and s.eval_set == "e") for r in ("a", "b"))
    assert (sa.n, sb.n) == (len(a), len(b))
    assert noise(sa, sb) == pytest.approx(expected_noise)
    comp = next(c for c in comparisons(all_scores) if c.eval_set == "e")
    assert (comp.best, comp.other) == ("a", "b")
    assert comp.delta == pytest.approx(sb.mean - sa.mean)
    assert comp.significant is significant


def test_scores_are_mean_and_sample_std_over_seeds_with_a_per_seed_average() -> None:
    all_scores = scores(results({"r": {"en": [1.0, 2.0, 3.0], "de": [3.0, 4.0, 5.0]}}))
    by_set = {s.eval_set: s for s in all_scores}
    assert by_set["en"].mean == pytest.approx(2.0) and by_set["en"].std == pytest.approx(1.0)
    assert by_set[AVERAGE].mean == pytest.approx(3.0) and by_set[AVERAGE].std == pytest.approx(1.0)  # (2,3,4)
    assert by_set["en"].cell() == "2.0000 ± 1.0000"


def test_markdown_ranks_recipes_and_shows_the_rule_and_noise() -> None:
    all_scores = scores(
        results({"worse": {"en": [2.0, 2.1, 1.9]}, "better": {"en": [1.0, 1.1, 0.9]}, "single": {"en": [1.5]}})
    )
    md = leaderboard_markdown(all_scores)
    lines = md.splitlines()
    table = [line for line in lines if line.startswith("| ")]
    assert table[1].startswith("| better | 3 | 1.0000 ± 0.1000") and table[2].startswith(
        "| single | 1 | 1.5000 (1 seed)"
    )
    assert "2·sqrt(s_a²/n_a + s_b²/n_b)" in md
    assert "| en | better | worse | +1.0000 | 0.1633 | yes |" in md
    assert "| en | better | single | +0.5000 | n/a (<2 seeds) | no |" in md
    assert leaderboard_png(all_scores).startswith(b"\x89PNG")


def test_empty_leaderboard_says_what_to_do() -> None:
    assert "materialize eval_results" in leaderboard_markdown([])


def test_eval_presets_are_named_and_demo_is_the_smaller_budget() -> None:
    from mmrecipe.proxy_eval.presets import EVAL_PRESETS, eval_preset, with_overrides

    full, demo = eval_preset("full"), eval_preset("demo")
    assert sorted(EVAL_PRESETS) == ["demo", "full"]
    assert (full.seeds, full.train_tokens) == ((0, 1, 2), 65_536)
    assert len(demo.seeds) >= 2  # still a seed-noise estimate for the significance rule
    assert len(demo.seeds) * demo.train_tokens * 4 <= len(full.seeds) * full.train_tokens
    with pytest.raises(ValueError, match=r"unknown eval preset 'tiny': choose one of \['demo', 'full'\]"):
        eval_preset("tiny")
    assert with_overrides(demo, {"seeds": [0, 1], "train_tokens": None, "lr": 0.1}) == (demo, "demo")
    chosen, label = with_overrides(demo, {"seeds": [4], "train_tokens": 512})
    assert (chosen.seeds, chosen.train_tokens, chosen.d_model, label) == (
        (4,),
        512,
        64,
        "demo (changed: seeds, train_tokens)",
    )
