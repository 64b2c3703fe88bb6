"""Unit-test fixtures shared by the proxy-eval tests: a small real tokenizer, a real token stream, real scores."""

from __future__ import annotations

from pydoc_data.topics import topics
from typing import TYPE_CHECKING

import numpy as np
import pytest

from mmrecipe.mixture.token_shards import BpeTokenizer, load_tokenizer
from tests.unit.test_mixture_helpers import save_tiny_tokenizer

if TYPE_CHECKING:  # torch loads when a test asks for scores, not when any unit test is collected (~5 CPU-s)
    from mmrecipe.proxy_eval.bits_per_byte import BitsPerByte


@pytest.fixture(scope="session")
def tiny_tok(tmp_path_factory: pytest.TempPathFactory) -> BpeTokenizer:
    """`save_tiny_tokenizer`'s 512-token BPE, loaded through the recipes' own loader."""
    path = save_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer") / "tokenizer.json")
    return load_tokenizer(path.name, str(path.parent))


@pytest.fixture(scope="session")
def stream(tiny_tok: BpeTokenizer) -> np.ndarray:
    return np.concatenate(
        [np.array([*tiny_tok.encode(topics[t]), tiny_tok.eot_id], dtype=np.uint16) for t in sorted(topics)[:30]]
    )


@pytest.fixture(scope="session")
def recorded_doc_losses(tiny_tok: BpeTokenizer, stream: np.ndarray) -> list[BitsPerByte]:
    """Per-document scores of real held-out text (Python topics the stream never saw) under one real trained model."""
    from mmrecipe.proxy_eval.bits_per_byte import document_bits, eval_documents
    from mmrecipe.proxy_eval.model import ModelConfig
    from mmrecipe.proxy_eval.training import TrainConfig, train

    cfg = ModelConfig(vocab_size=tiny_tok.vocab_size, context=32, d_model=32, n_layer=1, n_head=2)
    run = train(stream, cfg, TrainConfig(train_tokens=8 * 32 * 20, batch_size=8, lr=2e-2, threads=1), seed=0)
    held_out = "\n\n".join(topics[t] for t in sorted(topics)[-12:])
    return document_bits(run.model, tiny_tok, eval_documents(held_out, min_bytes=256))
