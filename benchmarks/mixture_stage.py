"""Benchmark of the mixture stage: tokenization throughput (batched vs per-document) and proxy training tokens/s.

    .venv/bin/python benchmarks/mixture_stage.py [--mb 8] [--steps 20] [--write]

Text: the Python reference manual topics shipped with CPython (`pydoc_data.topics`, real prose), cut into
web-page-sized documents (paragraph boundaries, <= 4 KB) and repeated up to `--mb` megabytes.

- `per-document encode`: `Tokenizer.encode(text, add_special_tokens=False)` for one document at a time,
  ids converted to a uint16 array (what a naive loop does).
- `batched (mixture path)`: `BpeTokenizer.encode_batch` over batches of 512 documents (the Rust tokenizer's
  `encode_batch_fast`, parallel over the cores), as `cached_partition_tokens` does.
- `cache write + read`: the whole content-addressed cache path on local disk (tokenize, write, read back).
Both tokenization paths must give identical ids; the script checks that before reporting.

Training: the eval_results defaults (d_model 64, 2 layers, 4 heads, context 128, batch 16, GPT-2 vocab)
for `--steps` steps on CPU; tokens/s counts the training tokens (batch x context) per wall second.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import torch

from mmrecipe.mixture.token_shards import cached_partition_tokens, load_tokenizer, tokenize_texts
from mmrecipe.proxy_eval.model import ModelConfig
from mmrecipe.proxy_eval.training import TrainConfig, train
from mmrecipe.storage import Storage

RESULTS = Path(__file__).with_name("mixture_stage_results.md")
KEEP_FROM = "\nThe machine is shared"


def documents(megabytes: float, max_chars: int = 4000) -> list[str]:
    """Web-page-sized documents of real prose, repeated up to `megabytes` of UTF-8."""
    base: list[str] = []
    for name in sorted(topics):
        doc = ""
        for para in topics[name].split("\n\n"):
            if doc and len(doc) + len(para) > max_chars:
                base.append(doc)
                doc = ""
            doc = f"{doc}\n\n{para}" if doc else para
        if doc:
            base.append(doc)
    out, size, k = [], 0, 0
    while size < megabytes * 1e6:
        doc = base[k % len(base)]
        out.append(doc)
        size += len(doc.encode("utf-8"))
        k += 1
    return out


def best_of(fn, repeats: int = 3) -> tuple[float, object]:
    """The shortest wall time of `repeats` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=8.0, help="megabytes of text to tokenize")
    ap.add_argument("--steps", type=int, default=20, help="training steps to time")
    ap.add_argument("--write", action="store_true", help=f"write the table to {RESULTS.name}")
    args = ap.parse_args()

    tok = load_tokenizer("gpt2")
    docs = documents(args.mb)
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6

    def per_document() -> list[np.ndarray]:
        return [np.asarray(tok.tokenizer.encode(d, add_special_tokens=False).ids, dtype=np.uint16) for d in docs]

    def batched() -> list[np.ndarray]:
        return list(tokenize_texts(tok, docs))

    t_plain, plain = best_of(per_document)
    t_batch, batch = best_of(batched)
    assert all(np.array_equal(a, b) for a, b in zip(plain, batch, strict=True)), "paths disagree"
    n_tokens = sum(len(a) for a in batch)

    def cache_path() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            storage = Storage(tmp)
            ids = [str(i) for i in range(len(docs))]
            built = cached_partition_tokens(storage, tok, "bench", "text", "sha", ids, docs)
            again = cached_partition_tokens(storage, tok, "bench", "text", "sha", ids, docs)
            assert not built.reused and again.reused and np.array_equal(built.tokens, again.tokens)
            return len(again.tokens)

    t_cache, _ = best_of(cache_path, repeats=1)

    stream = np.concatenate([np.append(a, tok.eot_id).astype(np.uint16) for a in batch])
    model_cfg = ModelConfig(vocab_size=tok.vocab_size, context=128, d_model=64, n_layer=2, n_head=4)
    train_cfg = TrainConfig(train_tokens=16 * 128 * args.steps, batch_size=16)
    train(stream, model_cfg, TrainConfig(train_tokens=16 * 128 * 2, batch_size=16), seed=0)  # warm-up
    load = os.getloadavg()[0]
    run = train(stream, model_cfg, train_cfg, seed=0)

    rows = [
        ("per-document `encode`", f"{mb / t_plain:.2f} MB/s", f"{n_tokens / t_plain / 1e3:.0f} k tokens/s", "1.00x"),
        (
            "batched `encode_batch_fast` (mixture path)",
            f"{mb / t_batch:.2f} MB/s",
            f"{n_tokens / t_batch / 1e3:.0f} k tokens/s",
            f"{t_plain / t_batch:.2f}x",
        ),
        (
            "cache: tokenize + write + read back",
            f"{mb / t_cache:.2f} MB/s",
            f"{n_tokens / t_cache / 1e3:.0f} k tokens/s",
            f"{t_plain / t_cache:.2f}x",
        ),
    ]
    lines = [
        f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), load average {load:.2f} when training started",
        f"text: {len(docs)} documents, {mb:.2f} MB UTF-8, {n_tokens} GPT-2 tokens "
        f"({mb * 1e6 / n_tokens:.2f} bytes/token)",
        "",
        "| tokenization | throughput | tokens | vs per-document |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        "| proxy training (CPU) | value |",
        "|---|---|",
        f"| model | d_model 64, 2 layers, 4 heads, context 128, vocab {tok.vocab_size}, batch 16 |",
        f"| steps timed | {run.steps} ({run.tokens_seen} tokens) |",
        f"| wall time | {run.wall_s:.2f} s |",
        f"| training throughput | {run.tokens_per_s:.0f} tokens/s |",
        f"| loss first -> last step | {run.curve[0]['loss']:.2f} -> {run.final_loss:.2f} |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:  # replaces the measured part; hand-written sections after it are kept
        old = RESULTS.read_text() if RESULTS.exists() else ""
        kept = old[old.index(KEEP_FROM) :] if KEEP_FROM in old else ""
        RESULTS.write_text(
            "# Mixture stage benchmark\n\nOutput of `.venv/bin/python benchmarks/mixture_stage.py --write`"
            " (best of 3 runs for tokenization).\n\n" + text + "\n" + kept
        )


if __name__ == "__main__":
    main()
