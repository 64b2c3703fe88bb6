"""Leaderboard statistics: each recipe at its best learning rate, and a pair is stable only when every rule holds.

The verdict tests run the real leaderboard code (`rank`) on per-document losses recorded from a real trained
model, shaped by a controllable fake trainer (tests/unit/fake_trainer.py).
"""

import math

import numpy as np
import pyarrow as pa
import pytest
from fake_trainer import FakeTrainer

from data_assets.plots import leaderboard_png
from mmrecipe.proxy_eval.bits_per_byte import BitsPerByte
from mmrecipe.proxy_eval.leaderboard import AVERAGE, leaderboard_markdown, noise, rank, scores
from mmrecipe.proxy_eval.report import budget_header

LO, HI = 3e-3, 1e-2


def test_recorded_losses_are_real_scores(recorded_doc_losses: list[BitsPerByte]) -> None:
    assert len(recorded_doc_losses) >= 20
    bpb = [d.bpb for d in recorded_doc_losses]
    assert all(0.5 < b < 8 for b in bpb) and np.std(bpb) > 0.01  # a trained model: documents differ in difficulty


@pytest.mark.parametrize(
    ("case", "trainer", "verdict"),
    [
        (  # 5% worse at both learning rates, 0.1% seed noise: every rule holds
            "stable",
            {"effect": {"b": {LO: 0.05, HI: 0.05}}},
            "stable: a better",
        ),
        (  # a is better at its best lr, b is better at the other: the order is an artefact of the learning rate
            "unstable across learning rates",
            {"effect": {"a": {HI: 0.10}, "b": {LO: 0.05, HI: 0.08}}},
            "no difference (order changes with the learning rate)",
        ),
        (  # 0.2% apart with 2% seed noise
            "within seed noise",
            {"effect": {"b": {LO: 0.002, HI: 0.002}}, "seed_std": 0.02},
            "no difference (undetectable at this budget)",
        ),
        (  # b is 20% worse on half the documents and 19.5% better on the other half: the CI spans 0
            "CI crosses 0",
            {"doc_effect": {"b": [0.20, -0.195]}, "seed_std": 0.00001},
            "no difference (bootstrap CI includes 0)",
        ),
    ],
)
def test_each_verdict_rule_on_recorded_losses(
    recorded_doc_losses: list[BitsPerByte], case: str, trainer: dict, verdict: str
) -> None:
    results, docs = FakeTrainer(recorded_doc_losses, **trainer).tables(["a", "b"])
    ranking = rank(results, docs)
    (pair,) = ranking.pairs
    assert pair.verdict() == verdict, case
    assert pair.stable is verdict.startswith("stable")
    md = leaderboard_markdown(ranking)
    assert f"| {verdict} |" in md
    if not pair.stable:
        assert "better" not in pair.verdict()  # never a winner from an unstable order


def test_stable_pair_figures(recorded_doc_losses: list[BitsPerByte]) -> None:
    results, docs = FakeTrainer(recorded_doc_losses, effect={"b": {LO: 0.05, HI: 0.05}, "a": {HI: 0.01}}).tables(
        ["a", "b"]
    )
    ranking = rank(results, docs)
    assert ranking.best_lr == {"a": LO, "b": LO}  # a is worse at HI: reported at LO
    (pair,) = ranking.pairs
    bpb = sum(d.nll_bits for d in recorded_doc_losses) / sum(d.utf8_bytes for d in recorded_doc_losses)
    assert pair.delta == pytest.approx(0.05 * bpb)
    assert pair.per_lr == pytest.approx({LO: 0.05 * bpb, HI: (1.05 - 1.01) * bpb})
    assert pair.ci is not None and pair.ci[0] > 0 and pair.ci[0] < 0.05 * bpb < pair.ci[1]
    assert rank(results, docs).pairs[0].ci == pair.ci  # the bootstrap is seeded
    (floor,) = ranking.floors
    s = np.std([1 - 0.001, 1, 1 + 0.001], ddof=1) * bpb * math.sqrt((1 + 1.05**2) / 2)  # pooled over a and b
    assert floor.seed_std == pytest.approx(s, rel=1e-6)
    assert floor.detectable == pytest.approx(T975[4] * math.sqrt(2 * floor.seed_std**2 / 3), rel=1e-4)


def test_two_recipes_with_the_same_data_and_no_noise_are_no_difference(recorded_doc_losses: list[BitsPerByte]) -> None:
    results, docs = FakeTrainer(recorded_doc_losses).tables(["a", "b"])
    (pair,) = rank(results, docs).pairs
    assert pair.delta == 0 and pair.verdict().startswith("no difference (order changes")


def test_without_per_document_losses_nothing_is_stable(recorded_doc_losses: list[BitsPerByte]) -> None:
    results, docs = FakeTrainer(recorded_doc_losses, effect={"b": {LO: 0.05, HI: 0.05}}).tables(["a", "b"])
    (pair,) = rank(results, docs.slice(0, 0)).pairs
    assert pair.verdict() == "no difference (no per-document losses)"


def test_one_seed_gives_no_noise_estimate_and_no_verdict(recorded_doc_losses: list[BitsPerByte]) -> None:
    results, docs = FakeTrainer(recorded_doc_losses, seeds=(0,), effect={"b": {LO: 0.5, HI: 0.5}}).tables(["a", "b"])
    ranking = rank(results, docs)
    assert ranking.pairs[0].noise == math.inf and not ranking.pairs[0].stable
    assert ranking.floors[0].detectable == math.inf
    assert "n/a (<2 seeds)" in leaderboard_markdown(ranking)


T975 = {2: 4.3027, 4: 2.7764}  # Student's t 97.5% quantiles from a printed table


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [  # t at n_a + n_b - 2 degrees of freedom, whatever the two stds
        ([1.00, 1.01, 0.99], [1.50, 1.51, 1.49], T975[4] * math.sqrt(2 * 0.01**2 / 3)),
        ([1.00, 1.20, 0.80], [1.05, 1.25, 0.85], T975[4] * math.sqrt(2 * 0.2**2 / 3)),
        ([1.00, 1.20], [1.50, 1.70], T975[2] * math.sqrt(2 * 0.02 / 2)),
        ([1.00, 1.00, 1.00], [1.50, 1.60, 1.70], T975[4] * math.sqrt(0.01 / 3)),
        ([1.00, 1.20], [1.50, 1.50], T975[2] * math.sqrt(0.02 / 2)),
        ([1.00, 1.20], [1.50], math.inf),
        ([1.00], [2.00], math.inf),
    ],
)
def test_seed_noise_is_a_t_quantile_of_the_standard_error(a: list[float], b: list[float], expected: float) -> None:
    rows = [
        {"recipe": r, "seed": i, "lr": LO, "eval_set": "e", "bpb": v}
        for r, vs in (("a", a), ("b", b))
        for i, v in enumerate(vs)
    ]
    sa, sb = (next(s for s in scores(pa.Table.from_pylist(rows)) if s.recipe == r and s.eval_set == "e") for r in "ab")
    assert noise(sa, sb) == pytest.approx(expected, rel=1e-4)


def test_a_gap_beyond_two_standard_errors_needs_the_t_quantile_of_its_seed_count(
    recorded_doc_losses: list[BitsPerByte],
) -> None:
    """2.5% worse everywhere with 1% seed noise: with 2 seeds a side that is beyond 2 SE but within t(2)·SE (a
    fixed 2 called such seed noise stable); a third seed shrinks the SE and t, and the same gap is stable."""
    trainer = {"effect": {"b": {LO: 0.025, HI: 0.025}}, "seed_std": 0.01}
    two = rank(*FakeTrainer(recorded_doc_losses, seeds=(0, 1), **trainer).tables(["a", "b"]))
    (pair,) = two.pairs
    sa, sb = (s for s in two.reported if s.eval_set == "held_out")
    se = math.sqrt(sa.std**2 / 2 + sb.std**2 / 2)
    assert pair.noise == pytest.approx(T975[2] * se, rel=1e-4)
    assert pair.same_order and pair.ci_excludes_zero and 2 * se < pair.delta < pair.noise
    assert pair.verdict() == "no difference (undetectable at this budget)"
    assert two.floors[0].detectable == pytest.approx(T975[2] * math.sqrt(2 * two.floors[0].seed_std ** 2 / 2), rel=1e-4)
    three = rank(*FakeTrainer(recorded_doc_losses, seeds=(0, 1, 2), **trainer).tables(["a", "b"]))
    assert three.pairs[0].verdict() == "stable: a better"
    assert three.pairs[0].noise < three.pairs[0].delta < pair.noise


def test_scores_are_per_learning_rate_with_a_per_seed_average() -> None:
    rows = [
        {"recipe": "r", "seed": s, "lr": lr, "eval_set": e, "bpb": v + (1.0 if lr == HI else 0.0)}
        for lr in (LO, HI)
        for e, vals in (("en", [1.0, 2.0, 3.0]), ("de", [3.0, 4.0, 5.0]))
        for s, v in enumerate(vals)
    ]
    by = {(s.eval_set, s.lr): s for s in scores(pa.Table.from_pylist(rows))}
    assert by[("en", LO)].mean == pytest.approx(2.0) and by[("en", LO)].std == pytest.approx(1.0)
    assert by[(AVERAGE, LO)].mean == pytest.approx(3.0) and by[(AVERAGE, HI)].mean == pytest.approx(4.0)
    assert by[("en", LO)].cell() == "2.0000 ± 1.0000"


def test_markdown_has_the_budget_header_best_lr_noise_floor_and_rule(recorded_doc_losses: list[BitsPerByte]) -> None:
    results, docs = FakeTrainer(recorded_doc_losses, effect={"b": {LO: 0.05, HI: 0.05}}).tables(["b", "a"])
    ranking = rank(results, docs)
    header = budget_header(results)
    assert header == [
        "eval config fake (a, b): 3 seeds x 2 learning rates (0.003, 0.01); 8,192 tokens per seed; "
        "model 0.10M parameters; scale 0.0041x Chinchilla; cpu float32"
    ]
    md = leaderboard_markdown(ranking, header)
    table = [line for line in md.splitlines() if line.startswith("| a |") or line.startswith("| b |")]
    assert table[0].startswith("| a | 0.003 | 3 |") and table[1].startswith("| b | 0.003 | 3 |")
    assert "smallest detectable Δ" in md and "paired bootstrap over eval documents" in md
    assert "| held_out | a vs b |" in md
    assert leaderboard_png(ranking.reported).startswith(b"\x89PNG")


def test_empty_leaderboard_says_what_to_do() -> None:
    assert "materialize eval_results" in leaderboard_markdown(rank(*FakeTrainer([]).tables([])))


def test_eval_presets_are_named_and_demo_keeps_the_old_demo_budget() -> None:
    from mmrecipe.proxy_eval.presets import EVAL_PRESETS, eval_preset, with_overrides

    full, demo = eval_preset("full"), eval_preset("demo")
    assert sorted(EVAL_PRESETS) == ["dclm_400m_1x", "demo", "full"]
    assert (full.seeds, full.lrs, full.train_tokens) == ((0, 1, 2), (3e-3, 1e-2), 65_536)
    assert len(demo.seeds) >= 2 and len(demo.lrs) >= 2  # still a seed-noise estimate and a learning-rate check
    assert demo.runs * demo.train_tokens == 2 * 16_384  # the demo's training tokens before the grid
    with pytest.raises(
        ValueError, match=r"unknown eval preset 'tiny': choose one of \['dclm_400m_1x', 'demo', 'full'\]"
    ):
        eval_preset("tiny")
    assert with_overrides(demo, {"seeds": [0, 1], "train_tokens": None, "lrs": []}) == (demo, "demo")
    chosen, label = with_overrides(demo, {"seeds": [4], "train_tokens": 512, "lrs": [0.1]})
    assert (chosen.seeds, chosen.lrs, chosen.train_tokens, chosen.d_model, label) == (
        (4,),
        (0.1,),
        512,
        64,
        "demo (changed: lrs, seeds, train_tokens)",
    )
