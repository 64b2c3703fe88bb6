"""Sampling plans: achieved token shares versus targets, epoch caps, too-small sources, determinism."""

import numpy as np
import pytest

from mmrecipe.mixture.sampling import SourceSpec, interleave, plan_sampling, share_deviations


def docs(n: int, seed: int, mean_tokens: float = 800) -> np.ndarray:
    """Token counts of `n` documents with a web-like long-tailed length distribution."""
    return np.maximum(1, np.random.default_rng(seed).lognormal(np.log(mean_tokens), 1.0, n).astype(np.int64))


@pytest.mark.parametrize(
    ("weights", "budget"),
    [
        ({"web": 0.7, "captions": 0.2, "speech": 0.1}, 400_000),
        ({"web": 1, "captions": 1, "speech": 1}, 300_000),
        ({"web": 0.9, "captions": 0.05, "speech": 0.05}, 1_000_000),
    ],
)
def test_achieved_shares_match_targets(weights: dict[str, float], budget: int) -> None:
    specs = [
        SourceSpec("web", weights["web"], 3, docs(2000, 1)),
        SourceSpec("captions", weights["captions"], 10, docs(3000, 2, mean_tokens=30)),
        SourceSpec("speech", weights["speech"], 10, docs(500, 3, mean_tokens=120)),
    ]
    plan = plan_sampling(specs, budget, seed=7, when_short="shrink_budget")
    total_w = sum(weights.values())
    for name, dev in share_deviations(plan).items():
        assert dev < 0.002, (name, dev)
        assert plan.achieved_shares()[name] == pytest.approx(weights[name] / total_w, abs=0.002)
    assert plan.too_small() == []
    assert abs(plan.achieved_tokens - budget) / budget < 0.002
    for p, spec in zip(plan.sources, specs, strict=True):
        assert p.achieved_tokens == int((p.copies * spec.token_counts).sum())
        assert p.copies.max() <= np.ceil(spec.max_epochs)


def test_upsampling_fills_whole_epochs_then_a_partial_one() -> None:
    counts = docs(100, 4, mean_tokens=50)
    spec = SourceSpec("small", 1.0, 5, counts)
    plan = plan_sampling([spec], int(counts.sum() * 2.5), seed=1, when_short="shrink_budget")
    copies = plan.sources[0].copies
    assert set(np.unique(copies)) == {2, 3}  # every document twice, about half of them a third time
    assert plan.sources[0].epochs == pytest.approx(2.5, abs=0.01)


def test_too_small_source_is_reported_and_budget_shrinks_to_keep_shares() -> None:
    big, tiny = docs(1000, 5), docs(10, 6, mean_tokens=100)
    specs = [SourceSpec("big", 0.5, 1, big), SourceSpec("tiny", 0.5, 2, tiny)]
    plan = plan_sampling(specs, 200_000, seed=3, when_short="shrink_budget")
    small = plan.sources[1]
    assert [p.name for p in plan.too_small()] == ["tiny"]
    assert small.copies.max() <= 2 and small.achieved_tokens <= 2 * tiny.sum()
    assert "too small: needs 100000 tokens" in small.note and "shrunk" in small.note
    assert plan.achieved_tokens < 0.1 * 200_000  # the total fell short...
    assert max(share_deviations(plan).values()) < 0.02  # ...but the shares are kept


def test_too_small_source_with_redistribute_keeps_budget_and_misses_share() -> None:
    big, tiny = docs(1000, 5), docs(10, 6, mean_tokens=100)
    specs = [SourceSpec("big", 0.5, 1, big), SourceSpec("tiny", 0.5, 2, tiny)]
    plan = plan_sampling(specs, 200_000, seed=3, when_short="redistribute")
    assert plan.sources[1].too_small and "other sources were given" in plan.sources[1].note
    assert plan.sources[1].achieved_tokens == 2 * tiny.sum()  # capped at two epochs
    assert abs(plan.achieved_tokens - 200_000) < 2000  # the others filled the budget
    assert share_deviations(plan)["tiny"] > 0.4


def test_same_seed_same_plan_other_seed_other_documents() -> None:
    specs = [SourceSpec("a", 1, 1, docs(500, 8)), SourceSpec("b", 1, 1, docs(500, 9))]
    p1 = plan_sampling(specs, 100_000, seed=11, when_short="shrink_budget")
    p2 = plan_sampling(specs, 100_000, seed=11, when_short="shrink_budget")
    p3 = plan_sampling(specs, 100_000, seed=12, when_short="shrink_budget")
    assert all(np.array_equal(a.copies, b.copies) for a, b in zip(p1.sources, p2.sources, strict=True))
    assert not np.array_equal(p1.sources[0].copies, p3.sources[0].copies)
    order = interleave({p.name: p.copies for p in p1.sources}, seed=11)
    assert order == interleave({p.name: p.copies for p in p2.sources}, seed=11)
    assert len(order) == sum(int(p.copies.sum()) for p in p1.sources)
    assert len(set(order)) == len(order)
    assert {s for s, _, _ in order[:50]} == {"a", "b"}  # sources are interleaved, not concatenated


def test_unknown_when_short_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="shrink_budget or redistribute"):
        plan_sampling([SourceSpec("a", 1, 1, docs(5, 1))], 100_000, seed=1, when_short="ignore")
