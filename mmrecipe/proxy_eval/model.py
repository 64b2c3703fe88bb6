"""A small decoder-only transformer (GPT-2 style, pre-LayerNorm, tied embeddings) for proxy evaluation.

The proxy model is deliberately tiny: it ranks mixtures (DCLM-style), it is not meant to be good.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """The shape of the proxy model."""

    vocab_size: int = 50257
    context: int = 128
    d_model: int = 128
    n_layer: int = 2
    n_head: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be a multiple of n_head={self.n_head}")


class Block(nn.Module):
    """One transformer block: causal self-attention then an MLP, each after a LayerNorm, with residuals."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(), nn.Linear(4 * cfg.d_model, cfg.d_model)
        )
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """A GPT-2-shaped language model over token ids."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits for every position of `idx` (batch, time)."""
        return self.hidden(idx) @ self.tok_emb.weight.T  # tied input/output embeddings

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The final layer-normed states of every position of `idx` (batch, time, d_model)."""
        t = idx.shape[1]
        if t > self.cfg.context:
            raise ValueError(f"sequence of {t} tokens is longer than the model's context {self.cfg.context}")
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats) of `targets` given `idx` (the training loss)."""
        logits = self(idx)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    @torch.inference_mode()
    def token_nats(self, idx: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy (nats) of each of `targets` given `idx`, flattened; no autograd.

        The same log-softmax as `loss`, computed in place in `logits` (a float32 buffer of at least
        batch x time rows and vocab_size columns, reused across calls): scoring allocates no logits of its
        own, which at GPT-2's 50,257 ids is 200 kB per token, freshly paged in on every call.
        """
        h = self.hidden(idx).reshape(-1, self.cfg.d_model)
        n = h.shape[0]
        if logits is None:
            logits = torch.empty(n, self.cfg.vocab_size, device=h.device, dtype=h.dtype)
        out = torch.matmul(h, self.tok_emb.weight.T, out=logits[:n])
        peak = out.amax(dim=1, keepdim=True)
        target = out.gather(1, targets.reshape(-1, 1))
        log_total = out.sub_(peak).exp_().sum(dim=1, keepdim=True).log_()
        return (log_total + peak - target).view(-1)
