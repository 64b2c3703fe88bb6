"""Unit-test fixtures shared by the proxy-eval tests: a small real tokenizer, a real token stream, real scores."""

from pydoc_data.topics import topics

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from mmrecipe.mixture.token_shards import EOT_TOKEN, BpeTokenizer, load_tokenizer
from mmrecipe.proxy_eval.bits_per_byte import BitsPerByte, document_bits, eval_documents
from mmrecipe.proxy_eval.model import ModelConfig
from mmrecipe.proxy_eval.training import TrainConfig, train


@pytest.fixture(scope="session")
def tiny_tok(tmp_path_factory: pytest.TempPathFactory) -> BpeTokenizer:
    """A 512-token byte-level BPE trained on Python's topics, loaded through the recipes' own loader.

    Training mechanics do not need GPT-2's 50k vocabulary, whose output layer dominates every step.
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=[EOT_TOKEN], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator([topics[t] for t in sorted(topics)], trainer)
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    bpe.save(str(path))
    return load_tokenizer(path.name, str(path.parent))


@pytest.fixture(scope="session")
def stream(tiny_tok: BpeTokenizer) -> np.ndarray:
    return np.concatenate(
        [np.array([*tiny_tok.encode(topics[t]), tiny_tok.eot_id], dtype=np.uint16) for t in sorted(topics)[:30]]
    )


@pytest.fixture(scope="session")
def recorded_doc_losses(tiny_tok: BpeTokenizer, stream: np.ndarray) -> list[BitsPerByte]:
    """Per-document scores of real held-out text (Python topics the stream never saw) under one real trained model."""
    cfg = ModelConfig(vocab_size=tiny_tok.vocab_size, context=32, d_model=32, n_layer=1, n_head=2)
    run = train(stream, cfg, TrainConfig(train_tokens=8 * 32 * 20, batch_size=8, lr=2e-2, threads=1), seed=0)
    held_out = "\n\n".join(topics[t] for t in sorted(topics)[-12:])
    return document_bits(run.model, tiny_tok, eval_documents(held_out, min_bytes=256))
