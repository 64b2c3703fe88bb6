"""Proxy-model training on a mixture's token stream: a fixed token budget, a seed, a device, a loss curve.

Batches are random windows of the stream (nanoGPT's `get_batch`), drawn from a generator seeded by the
run's seed; the model's initial weights come from the same seed. AdamW with linear warm-up and cosine
decay to a tenth of the peak learning rate. The forward pass runs under autocast when `dtype` is bfloat16.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from mmrecipe.proxy_eval.model import ModelConfig, TinyGPT


@dataclass(frozen=True)
class TrainConfig:
    """How long and how to train one proxy model."""

    train_tokens: int = 200_000
    batch_size: int = 16
    lr: float = 3e-3
    warmup_frac: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    log_every: int = 5
    device: str = "auto"
    dtype: str = "float32"
    threads: int | None = None

    def steps(self, context: int) -> int:
        return max(1, math.ceil(self.train_tokens / (self.batch_size * context)))


@dataclass
class TrainResult:
    """A trained proxy model and how its training went."""

    seed: int
    steps: int
    tokens_seen: int
    wall_s: float
    final_loss: float
    curve: list[dict[str, float]] = field(default_factory=list)
    model: TinyGPT | None = field(default=None, repr=False)
    device: str = "cpu"
    lr: float = 0.0
    dtype: str = "float32"

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / self.wall_s if self.wall_s else 0.0


def resolve_device(name: str) -> torch.device:
    """The torch device for `cpu`, `cuda[:N]` or `auto` (CUDA when present); raises if CUDA is asked for but absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but torch sees no CUDA device: set device to 'cpu'")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"device {name!r}: use 'cpu', 'cuda' or 'auto'")
    return torch.device(name)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_dtype(name: str) -> torch.dtype:
    """The torch dtype of the forward pass for `float32` or `bfloat16`; raises naming the choices."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r}: use one of {sorted(DTYPES)}")
    return DTYPES[name]


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch's CPU threads set to `threads` (None or 0: unchanged) inside the block, restored after it, so that
    one run's setting never leaks into the next caller's numbers."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _lr_at(step: int, steps: int, cfg: TrainConfig) -> float:
    warm = max(1, int(steps * cfg.warmup_frac))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(stream: np.ndarray, model_cfg: ModelConfig, cfg: TrainConfig, seed: int) -> TrainResult:
    """Train a fresh proxy model on `stream` (token ids) for `cfg.train_tokens` tokens with `seed`."""
    ctx = model_cfg.context
    if len(stream) < ctx + 2:
        raise ValueError(f"the mixture has {len(stream)} tokens; training needs at least context+2 = {ctx + 2}")
    if int(stream.max()) >= model_cfg.vocab_size:
        raise ValueError(f"token id {int(stream.max())} is outside the model's vocabulary of {model_cfg.vocab_size}")
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype)
    with torch_threads(cfg.threads):
        return _train(stream, model_cfg, cfg, seed, device, dtype)


def _train(
    stream: np.ndarray, model_cfg: ModelConfig, cfg: TrainConfig, seed: int, device: torch.device, dtype: torch.dtype
) -> TrainResult:
    ctx = model_cfg.context
    torch.manual_seed(seed)
    model = TinyGPT(model_cfg).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    rng = np.random.default_rng(seed)
    steps = cfg.steps(ctx)
    offsets = np.arange(ctx + 1)
    curve: list[dict[str, float]] = []
    loss_value = float("nan")
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        starts = rng.integers(0, len(stream) - ctx - 1, size=cfg.batch_size)
        window = torch.from_numpy(np.asarray(stream[starts[:, None] + offsets], dtype=np.int64)).to(device)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, cfg)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model.loss(window[:, :-1], window[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        loss_value = float(loss.detach())
        if step % cfg.log_every == 0 or step == steps - 1:
            curve.append(
                {
                    "step": step,
                    "tokens_seen": (step + 1) * cfg.batch_size * ctx,
                    "loss": loss_value,
                    "lr": _lr_at(step, steps, cfg),
                }
            )
    wall = time.perf_counter() - start
    model.eval()
    tokens = steps * cfg.batch_size * ctx
    return TrainResult(seed, steps, tokens, wall, loss_value, curve, model, str(device), cfg.lr, cfg.dtype)
