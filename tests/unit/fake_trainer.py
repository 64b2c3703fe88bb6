"""A controllable stand-in for proxy training, for leaderboard tests only (the real trainer: test_proxy_eval_training).

It starts from real recorded numbers, the per-document scores of one real trained model
(`recorded_doc_losses` in conftest.py), and writes the result rows and per-document rows that a grid of
(recipe, learning rate, seed) runs would write, in the real schemas, with effects the test controls:

- `effect[recipe][lr]`: a relative change of every document's loss at that learning rate;
- `doc_effect[recipe]`: a relative change per document, repeated over the documents (a mixed effect);
- `seed_std`: relative seed noise; seed k multiplies every loss by 1 + seed_std * z_k with z = (-1, 0, 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from mmrecipe.proxy_eval.bits_per_byte import BitsPerByte
from mmrecipe.proxy_eval.evaluate import DOC_LOSSES_SCHEMA, RESULTS_SCHEMA

Z = (-1.0, 0.0, 1.0)


@dataclass
class FakeTrainer:
    """Result tables of a seed x learning-rate grid built from recorded per-document scores."""

    recorded: Sequence[BitsPerByte]
    seeds: tuple[int, ...] = (0, 1, 2)
    lrs: tuple[float, ...] = (3e-3, 1e-2)
    seed_std: float = 0.001
    effect: Mapping[str, Mapping[float, float]] = field(default_factory=dict)
    doc_effect: Mapping[str, Sequence[float]] = field(default_factory=dict)
    eval_set: str = "held_out"

    def tables(self, recipes: Sequence[str]) -> tuple[pa.Table, pa.Table]:
        """(results, doc_losses) of every recipe's grid."""
        rows, docs = [], []
        for recipe in recipes:
            for lr in self.lrs:
                for k, seed in enumerate(self.seeds):
                    scale = (1 + self.effect.get(recipe, {}).get(lr, 0.0)) * (1 + self.seed_std * Z[k % len(Z)])
                    mixed = self.doc_effect.get(recipe, [0.0])
                    nll = [d.nll_bits * scale * (1 + mixed[i % len(mixed)]) for i, d in enumerate(self.recorded)]
                    size = sum(d.utf8_bytes for d in self.recorded)
                    rows.append(
                        {"recipe": recipe, "mixture_version": "v", "seed": seed, "lr": lr, "eval_set": self.eval_set}
                        | {"bpb": sum(nll) / size, "nll_bits": sum(nll), "utf8_bytes": size, "eval_tokens": 1}
                        | {"tokens_seen": 8192, "steps": 8, "final_train_loss": 5.0, "wall_s": 1.0}
                        | {"device": "cpu", "dtype": "float32", "parameters": 100_000, "eval_config": "fake"}
                    )
                    docs += [
                        {"recipe": recipe, "seed": seed, "lr": lr, "eval_set": self.eval_set, "doc": i}
                        | {"nll_bits": v, "utf8_bytes": d.utf8_bytes}
                        for i, (v, d) in enumerate(zip(nll, self.recorded, strict=True))
                    ]
        return pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA), pa.Table.from_pylist(docs, schema=DOC_LOSSES_SCHEMA)
