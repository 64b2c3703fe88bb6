"""Bits per byte of held-out text under a proxy model: total negative log-likelihood in bits / UTF-8 bytes.

Dividing by bytes rather than tokens makes the figure comparable across tokenizers. An eval set is a list of
documents (`eval_documents`: its blank-line-separated paragraphs packed to at least 512 bytes). Each document
is encoded with the mixture's tokenizer; the documents are concatenated behind one end-of-text id, so every
token is predicted exactly once, and scored in consecutive windows of the model's context length. The
per-token losses are summed per document: the leaderboard bootstraps over these per-document scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mmrecipe.mixture.token_shards import BpeTokenizer
from mmrecipe.proxy_eval.model import TinyGPT

EVAL_DOC_MIN_BYTES = 512


@dataclass(frozen=True)
class BitsPerByte:
    """The score of one text: NLL in bits, its UTF-8 size, its token count, and their ratio."""

    nll_bits: float
    utf8_bytes: int
    tokens: int

    @property
    def bpb(self) -> float:
        return self.nll_bits / self.utf8_bytes if self.utf8_bytes else float("nan")


def eval_documents(text: str, min_bytes: int = EVAL_DOC_MIN_BYTES) -> list[str]:
    """The documents of an eval set: consecutive paragraphs packed to >= `min_bytes`; they concatenate to `text`."""
    parts = text.split("\n\n")
    docs, current = [], ""
    for paragraph in [p + "\n\n" for p in parts[:-1]] + [parts[-1]]:
        current += paragraph
        if len(current.encode("utf-8")) >= min_bytes:
            docs.append(current)
            current = ""
    if current:
        if docs:
            docs[-1] += current  # a short tail joins the last document
        else:
            docs.append(current)
    return docs


@dataclass(frozen=True)
class EncodedDocs:
    """Documents as one scored stream: the end-of-text id then every document's ids, each token's document, sizes.

    Encoded once per eval set and scored under every model of a grid.
    """

    ids: np.ndarray  # int64, len = 1 + tokens
    owner: np.ndarray  # the document of each predicted token (ids[1:])
    utf8_bytes: tuple[int, ...]
    tokens: tuple[int, ...]


def encode_documents(tok: BpeTokenizer, docs: Sequence[str]) -> EncodedDocs:
    """The scored stream of `docs` under `tok` (see the module docstring)."""
    encoded = [tok.encode(d) for d in docs]
    sizes = tuple(len(e) for e in encoded)
    ids = np.array([tok.eot_id, *(i for e in encoded for i in e)], dtype=np.int64)
    owner = np.repeat(np.arange(len(docs)), sizes)
    return EncodedDocs(ids, owner, tuple(len(d.encode("utf-8")) for d in docs), sizes)


def score_documents(model: TinyGPT, docs: EncodedDocs, batch_size: int = 16) -> list[BitsPerByte]:
    """The score of each document of an encoded stream under `model`, in windows of the model's context."""
    ctx = model.cfg.context
    device = next(model.parameters()).device
    n_pred = len(docs.ids) - 1
    nats = np.zeros(n_pred)
    seq = torch.from_numpy(docs.ids)
    windows = [(i, min(ctx, n_pred - i)) for i in range(0, n_pred, ctx)]
    full = [w for w in windows if w[1] == ctx]
    batches = [full[b : b + batch_size] for b in range(0, len(full), batch_size)]
    batches += [[w] for w in windows if w[1] != ctx]
    was_training = model.training
    model.eval()
    logits = torch.empty(min(len(full), batch_size) * ctx or ctx, model.cfg.vocab_size, device=device)
    for chunk in batches:
        length = chunk[0][1]
        x = torch.stack([seq[i : i + length] for i, _ in chunk]).to(device)
        y = torch.stack([seq[i + 1 : i + length + 1] for i, _ in chunk]).to(device)
        losses = model.token_nats(x, y, logits).view(len(chunk), length).double().cpu().numpy()
        for (i, _), row in zip(chunk, losses, strict=True):
            nats[i : i + length] = row
    model.train(was_training)
    per_doc = np.bincount(docs.owner, weights=nats, minlength=len(docs.tokens)) / math.log(2)
    return [
        BitsPerByte(float(bits), size, tokens)
        for bits, size, tokens in zip(per_doc, docs.utf8_bytes, docs.tokens, strict=True)
    ]


def document_bits(model: TinyGPT, tok: BpeTokenizer, docs: Sequence[str], batch_size: int = 16) -> list[BitsPerByte]:
    """The score of each document of `docs` under `model`, scored as one stream (see the module docstring)."""
    return score_documents(model, encode_documents(tok, docs), batch_size)


def bits_per_byte(model: TinyGPT, tok: BpeTokenizer, text: str, batch_size: int = 16) -> BitsPerByte:
    """The bits per byte of `text` under `model`, as one document."""
    return document_bits(model, tok, [text], batch_size)[0]
