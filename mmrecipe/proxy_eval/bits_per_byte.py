"""Bits per byte of held-out text under a proxy model: total negative log-likelihood in bits / UTF-8 bytes.

Dividing by bytes rather than tokens makes the figure comparable across tokenizers. The text is encoded
with the mixture's tokenizer, preceded by the end-of-text id so that every token of the text is
predicted exactly once, and scored in consecutive windows of the model's context length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mmrecipe.mixture.token_shards import BpeTokenizer
from mmrecipe.proxy_eval.model import TinyGPT


@dataclass(frozen=True)
class BitsPerByte:
    """The score of one text: NLL in bits, its UTF-8 size, its token count, and their ratio."""

    nll_bits: float
    utf8_bytes: int
    tokens: int

    @property
    def bpb(self) -> float:
        return self.nll_bits / self.utf8_bytes if self.utf8_bytes else float("nan")


@torch.no_grad()
def bits_per_byte(model: TinyGPT, tok: BpeTokenizer, text: str, batch_size: int = 16) -> BitsPerByte:
    """The bits per byte of `text` under `model`."""
    ctx = model.cfg.context
    device = next(model.parameters()).device
    ids = [tok.eot_id, *tok.encode(text)]
    n_pred = len(ids) - 1
    if n_pred <= 0:
        return BitsPerByte(0.0, len(text.encode("utf-8")), 0)
    seq = torch.tensor(ids, dtype=torch.long)
    windows = [(i, min(ctx, n_pred - i)) for i in range(0, n_pred, ctx)]
    was_training = model.training
    model.eval()
    total_nats = 0.0
    full = [w for w in windows if w[1] == ctx]
    for b in range(0, len(full), batch_size):
        chunk = full[b : b + batch_size]
        x = torch.stack([seq[i : i + ctx] for i, _ in chunk]).to(device)
        y = torch.stack([seq[i + 1 : i + ctx + 1] for i, _ in chunk]).to(device)
        total_nats += float(model.loss(x, y, reduction="sum"))
    for i, length in (w for w in windows if w[1] != ctx):
        x = seq[i : i + length].unsqueeze(0).to(device)
        y = seq[i + 1 : i + length + 1].unsqueeze(0).to(device)
        total_nats += float(model.loss(x, y, reduction="sum"))
    model.train(was_training)
    return BitsPerByte(total_nats / math.log(2), len(text.encode("utf-8")), n_pred)
