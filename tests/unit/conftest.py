"""Unit-test fixtures shared by the proxy-eval tests: a small real tokenizer and a real token stream."""

from pydoc_data.topics import topics

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from mmrecipe.mixture.token_shards import EOT_TOKEN, BpeTokenizer, load_tokenizer


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
