"""Named proxy-eval budgets: how many seeds, how many training tokens per seed, and the proxy model's shape.

`full` is what `mmrecipe build` and the Dagster UI run by default: three seeds give the seed noise that the
leaderboard's significance rule needs. `demo` is a small budget for `mmrecipe demo` on a laptop or a busy 2-core
machine: two seeds (still a noise estimate) on a quarter of the tokens. Its scores are noisier and higher (less
training); the preset's name is recorded in every eval_results row and in the leaderboard header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class EvalPreset:
    """A named proxy-eval budget: seeds, training tokens per seed, batch size and model shape."""

    name: str
    seeds: tuple[int, ...]
    train_tokens: int
    batch_size: int = 16
    context: int = 128
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4


EVAL_PRESETS = {
    "full": EvalPreset("full", seeds=(0, 1, 2), train_tokens=65_536),
    "demo": EvalPreset("demo", seeds=(0, 1), train_tokens=16_384),
}


def eval_preset(name: str) -> EvalPreset:
    """The preset called `name`; a ValueError lists the choices."""
    if name not in EVAL_PRESETS:
        raise ValueError(f"unknown eval preset {name!r}: choose one of {sorted(EVAL_PRESETS)}")
    return EVAL_PRESETS[name]


def with_overrides(preset: EvalPreset, overrides: Mapping[str, Any]) -> tuple[EvalPreset, str]:
    """`preset` with the given fields replaced (None: keep), and its label, e.g. `demo (changed: train_tokens)`."""
    own = {f.name: overrides[f.name] for f in fields(preset) if f.name != "name" and overrides.get(f.name) is not None}
    chosen = replace(preset, **own | ({"seeds": tuple(own["seeds"])} if "seeds" in own else {}))
    changed = sorted(k for k in own if getattr(chosen, k) != getattr(preset, k))
    return chosen, f"{preset.name} (changed: {', '.join(changed)})" if changed else preset.name
