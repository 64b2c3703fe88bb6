"""The declared steps of a shard function (datatrove-style), and what each step did: time and drop counts.

A shard function runs its records through a list of `Step`s with `run_steps`. A step sees the items
still alive and gives each either a value or an `Outcome` (dropped by policy, or rejected as bad input,
with a reason code). `run_steps` times every step and counts the outcomes it set; the stats of all
shards are summed (`StepStats.merged`) into the stage metadata as `step_<name>_seconds`,
`step_<name>_in`, `step_<name>_dropped_<reason>` and `step_<name>_rejected_<reason>`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DROPPED, REJECTED = "dropped", "rejected"


@dataclass(frozen=True)
class Outcome:
    """Why a record leaves the stage: dropped (policy) or rejected (bad input), with a reason code."""

    outcome: str
    reason: str
    detail: str = ""


@dataclass
class Item:
    """One record in a shard's steps: its input row, what the steps made of it, and its outcome once decided."""

    row: dict[str, Any]
    value: Any = None
    outcome: Outcome | None = None


@dataclass(frozen=True)
class Step:
    """A named step: `run` gets the items still alive and sets their `value` or `outcome`."""

    name: str
    run: Callable[[list[Item]], None]


@dataclass
class StepStats:
    """What one step did (over one shard, or summed over shards): items in, seconds, outcomes by reason."""

    seen: int = 0
    seconds: float = 0.0
    dropped: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)

    def add(self, other: StepStats) -> None:
        self.seen += other.seen
        self.seconds += other.seconds
        self.dropped.update(other.dropped)
        self.rejected.update(other.rejected)

    def as_json(self) -> dict[str, Any]:
        return {"seen": self.seen, "seconds": self.seconds, "dropped": dict(self.dropped),
                "rejected": dict(self.rejected)}  # fmt: skip

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> StepStats:
        return cls(int(d["seen"]), float(d["seconds"]), Counter(d["dropped"]), Counter(d["rejected"]))

    @staticmethod
    def merged(many: Iterable[Mapping[str, StepStats]]) -> dict[str, StepStats]:
        """Per-step stats summed over shards, steps in the order they were first seen."""
        out: dict[str, StepStats] = {}
        for stats in many:
            for name, s in stats.items():
                out.setdefault(name, StepStats()).add(s)
        return out


def run_steps(steps: Sequence[Step], items: list[Item], stats: dict[str, StepStats]) -> list[Item]:
    """Run `items` through `steps` in order (each step sees the items still alive), adding to `stats`."""
    for step in steps:
        alive = [it for it in items if it.outcome is None]
        started = time.perf_counter()
        if alive:
            step.run(alive)
        s = stats.setdefault(step.name, StepStats())
        s.seconds += time.perf_counter() - started
        s.seen += len(alive)
        for it in alive:
            if it.outcome is not None:
                (s.dropped if it.outcome.outcome == DROPPED else s.rejected)[it.outcome.reason] += 1
    return items


def step_metadata(stats: Mapping[str, StepStats]) -> dict[str, int | float]:
    """Flat metadata of per-step stats: `step_<name>_seconds`, `_in`, `_dropped_<reason>`, `_rejected_<reason>`."""
    meta: dict[str, int | float] = {}
    for name, s in stats.items():
        meta[f"step_{name}_in"] = int(s.seen)
        meta[f"step_{name}_seconds"] = round(float(s.seconds), 3)
        meta |= {f"step_{name}_dropped_{r}": int(n) for r, n in sorted(s.dropped.items())}
        meta |= {f"step_{name}_rejected_{r}": int(n) for r, n in sorted(s.rejected.items())}
    return meta
