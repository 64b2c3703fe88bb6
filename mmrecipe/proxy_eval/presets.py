"""Named proxy-eval budgets: the seed x learning-rate grid, tokens per run, the proxy model's shape, device, dtype.

`full` is what `mmrecipe build` and the Dagster UI run by default: three seeds give the seed noise, two learning
rates show whether an order holds when the learning rate changes (the leaderboard's stability rule needs both).
`demo` keeps `mmrecipe demo` about as fast as a 2 seeds x 16k-token budget did: the same grid shape at 2 seeds
x 2 learning rates on a quarter of the tokens per run (8k, batch 8). `dclm_400m_1x` is a GPU-scale ladder rung
in the shape of DCLM's 400M-1x (about 412M parameters, Chinchilla 1x = 20 tokens per parameter, bf16 on CUDA);
it is only exercised on this CPU machine for the device and dtype it hands to torch. The preset's name is
recorded in every eval_results row and in the leaderboard header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

CHINCHILLA_TOKENS_PER_PARAMETER = 20


@dataclass(frozen=True)
class EvalPreset:
    """A named proxy-eval budget: seeds x learning rates, training tokens per run, batch, model shape, device."""

    name: str
    seeds: tuple[int, ...]
    train_tokens: int
    lrs: tuple[float, ...] = (3e-3, 1e-2)
    batch_size: int = 16
    context: int = 128
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    device: str = ""  # empty: the stage's device (cuda when the deployment gives the stage a GPU)
    dtype: str = "float32"  # or "bfloat16": the autocast dtype of the forward pass

    @property
    def runs(self) -> int:
        return len(self.seeds) * len(self.lrs)


EVAL_PRESETS = {
    "full": EvalPreset("full", seeds=(0, 1, 2), train_tokens=65_536),
    "demo": EvalPreset("demo", seeds=(0, 1), train_tokens=8_192, batch_size=8),
    "dclm_400m_1x": EvalPreset(
        "dclm_400m_1x",
        seeds=(0, 1, 2),
        train_tokens=8_200_000_000,
        lrs=(1e-3, 3e-3),
        batch_size=256,
        context=2048,
        d_model=1024,
        n_layer=24,
        n_head=8,
        device="cuda",
        dtype="bfloat16",
    ),
}


def eval_preset(name: str) -> EvalPreset:
    """The preset called `name`; a ValueError lists the choices."""
    if name not in EVAL_PRESETS:
        raise ValueError(f"unknown eval preset {name!r}: choose one of {sorted(EVAL_PRESETS)}")
    return EVAL_PRESETS[name]


def with_overrides(preset: EvalPreset, overrides: Mapping[str, Any]) -> tuple[EvalPreset, str]:
    """`preset` with the given fields replaced (None or empty: keep), and its label, e.g. `demo (changed: lrs)`."""
    own = {
        f.name: overrides[f.name]
        for f in fields(preset)
        if f.name != "name" and overrides.get(f.name) not in (None, "", [])
    }
    own |= {k: tuple(own[k]) for k in ("seeds", "lrs") if k in own}
    chosen = replace(preset, **own)
    changed = sorted(k for k in own if getattr(chosen, k) != getattr(preset, k))
    return chosen, f"{preset.name} (changed: {', '.join(changed)})" if changed else preset.name


def scale_label(tokens_per_run: int, parameters: int) -> str:
    """The compute scale of a proxy run as a multiple of Chinchilla's 20 tokens per parameter, e.g. `0.02x`."""
    return f"{tokens_per_run / (CHINCHILLA_TOKENS_PER_PARAMETER * parameters):.3g}x Chinchilla"
