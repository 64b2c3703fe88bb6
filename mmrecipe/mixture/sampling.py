"""A mixture's sampling plan: how many copies of each candidate document to take, per source.

Deterministic weighted, token-budgeted sampling with per-source epoch caps (Dolma mixer / DCLM style):

1. Each source's target is `total_tokens * weight / sum(weights)`.
2. A source can give at most `available_tokens * max_epochs` (its upsampling cap). A source whose
   target exceeds that cap is *too small*, and this is reported. Then:
   - `shrink_budget` (default) scales every target down by the same factor, so that the shares still
     match the weights and only the total falls short;
   - `redistribute` gives the missing tokens to the other sources in proportion to their weights (up to
     their own caps), so the total is met and the short source's share falls below its target.
3. A source's target is filled with whole epochs (every candidate once per epoch) plus a partial epoch:
   candidates in a seeded random order, each taken while it still fits, then at most one more (the
   smallest) if overshooting with it lands closer to the target than stopping short, then up to four
   one-for-one swaps of documents that each bring the total closer to the target.

The same candidates, weights and seed give the same plan on every machine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SourceSpec:
    """What sampling needs to know about one source: weight, epoch cap and candidates' token counts."""

    name: str
    weight: float
    max_epochs: float
    token_counts: np.ndarray  # one entry per candidate document, canonical (sorted) order


@dataclass
class SourcePlan:
    """The sampling outcome of one source."""

    name: str
    candidates: int
    available_tokens: int
    max_epochs: float
    target_share: float
    target_tokens: int  # total_tokens * share, before any cap
    planned_tokens: int  # after shrink/redistribute
    copies: np.ndarray = field(repr=False)  # copies per candidate
    achieved_tokens: int = 0
    too_small: bool = False
    note: str = ""

    @property
    def selected_docs(self) -> int:
        return int((self.copies > 0).sum())

    @property
    def epochs(self) -> float:
        return self.achieved_tokens / self.available_tokens if self.available_tokens else 0.0


@dataclass
class SamplingPlan:
    """The plan for all sources, with the achieved token shares."""

    total_tokens: int
    when_short: str
    sources: list[SourcePlan]

    @property
    def achieved_tokens(self) -> int:
        return sum(s.achieved_tokens for s in self.sources)

    def achieved_shares(self) -> dict[str, float]:
        total = self.achieved_tokens
        return {s.name: (s.achieved_tokens / total if total else 0.0) for s in self.sources}

    def too_small(self) -> list[SourcePlan]:
        return [s for s in self.sources if s.too_small]


def source_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator seeded by the recipe seed and stable names (independent of Python's hash seed)."""
    words = [int(hashlib.sha256(n.encode()).hexdigest()[:8], 16) for n in names]
    return np.random.default_rng([seed, *words])


def _targets(specs: Sequence[SourceSpec], total_tokens: int, when_short: str) -> tuple[dict[str, float], set[str]]:
    """Planned tokens per source, and the names of sources whose cap is below their weighted target."""
    weight_sum = sum(s.weight for s in specs)
    wanted = {s.name: total_tokens * s.weight / weight_sum for s in specs}
    caps = {s.name: float(s.token_counts.sum()) * s.max_epochs for s in specs}
    short = {n for n in wanted if caps[n] < wanted[n]}
    if when_short == "shrink_budget":
        scale = min([1.0] + [caps[n] / wanted[n] for n in short])
        return {n: wanted[n] * scale for n in wanted}, short
    if when_short != "redistribute":
        raise ValueError(f"when_short={when_short!r}: use shrink_budget or redistribute")
    planned: dict[str, float] = {}
    open_specs = list(specs)
    budget = float(total_tokens)
    while open_specs:
        w = sum(s.weight for s in open_specs)
        over = [s for s in open_specs if caps[s.name] < budget * s.weight / w]
        if not over:
            planned |= {s.name: budget * s.weight / w for s in open_specs}
            break
        for s in over:
            planned[s.name] = caps[s.name]
            budget -= caps[s.name]
        open_specs = [s for s in open_specs if s not in over]
    return planned, short


def _best_swap(counts: np.ndarray, taken: np.ndarray, gap: float, room: float) -> tuple[int, int] | None:
    """(taken doc, untaken doc) whose exchange best reduces |gap| (target minus taken tokens), if any does."""
    ins = np.flatnonzero(~taken & (counts > 0))
    outs = np.flatnonzero(taken)
    if not len(ins) or not len(outs):
        return None
    in_sorted = ins[np.argsort(counts[ins], kind="stable")]
    sizes = counts[in_sorted]
    best, best_err = None, abs(gap)
    for o in outs:  # want counts[in] - counts[o] close to gap, without exceeding the epoch cap
        want = counts[o] + gap
        k = int(np.searchsorted(sizes, want))
        for j in (k - 1, k):
            if 0 <= j < len(sizes):
                delta = int(sizes[j]) - int(counts[o])
                err = abs(gap - delta)
                if err < best_err and delta <= room:
                    best, best_err = (int(o), int(in_sorted[j])), err
    return best


def _fill(spec: SourceSpec, planned: float, seed: int) -> np.ndarray:
    """Copies per candidate that reach `planned` tokens: whole epochs, then a seeded partial epoch."""
    counts = spec.token_counts.astype(np.int64)
    available = int(counts.sum())
    copies = np.zeros(len(counts), dtype=np.int64)
    if available == 0 or planned <= 0:
        return copies
    cap = available * spec.max_epochs
    full = min(int(planned // available), math.floor(spec.max_epochs))
    copies += full
    remainder = planned - full * available
    room = cap - full * available
    taken = 0
    order = source_rng(seed, spec.name, f"epoch-{full}").permutation(len(counts))
    partial = np.zeros(len(counts), dtype=bool)
    for i in order:  # first fit in seeded order: take every document that still fits
        c = int(counts[i])
        if c and taken + c <= min(remainder, room):
            partial[i] = True
            taken += c
    rest = [int(i) for i in order if not partial[i] and counts[i] and taken + counts[i] <= room]
    if rest:  # one more document if overshooting by it lands closer to the target than stopping short
        best = min(rest, key=lambda i: int(counts[i]))
        if abs(taken + int(counts[best]) - remainder) < abs(taken - remainder):
            partial[best] = True
            taken += int(counts[best])
    for _ in range(4):  # swap a taken document for an untaken one when that lands closer
        swap = _best_swap(counts, partial, remainder - taken, room - taken)
        if swap is None:
            break
        out_i, in_i = swap
        partial[out_i], partial[in_i] = False, True
        taken += int(counts[in_i]) - int(counts[out_i])
    copies += partial
    return copies


def plan_sampling(specs: Sequence[SourceSpec], total_tokens: int, seed: int, when_short: str) -> SamplingPlan:
    """The sampling plan of a recipe's sources for a token budget."""
    planned, short = _targets(specs, total_tokens, when_short)
    weight_sum = sum(s.weight for s in specs)
    plans: list[SourcePlan] = []
    for spec in specs:
        copies = _fill(spec, planned[spec.name], seed)
        available = int(spec.token_counts.sum())
        target = total_tokens * spec.weight / weight_sum
        plan = SourcePlan(
            name=spec.name,
            candidates=len(spec.token_counts),
            available_tokens=available,
            max_epochs=spec.max_epochs,
            target_share=spec.weight / weight_sum,
            target_tokens=round(target),
            planned_tokens=round(planned[spec.name]),
            copies=copies,
            achieved_tokens=int((copies * spec.token_counts).sum()),
            too_small=spec.name in short,
        )
        if plan.too_small:
            plan.note = (
                f"too small: needs {plan.target_tokens} tokens but has {available} tokens x {spec.max_epochs:g} "
                f"epochs = {round(available * spec.max_epochs)}; "
                + (
                    "the whole budget was shrunk to keep the shares"
                    if when_short == "shrink_budget"
                    else "the other sources were given the missing tokens"
                )
            )
        plans.append(plan)
    return SamplingPlan(total_tokens, when_short, plans)


def share_deviations(plan: SamplingPlan, targets: Mapping[str, float] | None = None) -> dict[str, float]:
    """|achieved - target| token share per source."""
    achieved = plan.achieved_shares()
    targets = targets or {s.name: s.target_share for s in plan.sources}
    return {n: abs(achieved[n] - targets[n]) for n in targets}


def interleave(copies_by_source: Mapping[str, np.ndarray], seed: int) -> list[tuple[str, int, int]]:
    """The order of all document copies in the token stream: (source, candidate index, copy number), shuffled."""
    items: list[tuple[str, int, int]] = []
    for name in sorted(copies_by_source):
        for i in np.flatnonzero(copies_by_source[name]):
            items += [(name, int(i), k) for k in range(int(copies_by_source[name][i]))]
    order = source_rng(seed, "interleave").permutation(len(items))
    return [items[j] for j in order]
