"""Proxy models: training on real text lowers the loss, is seeded, and bits per byte are computed honestly."""

import math
from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import pytest
import torch
from test_mixture_helpers import build_lake, eval_text, recipe_text
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from data_assets.plots import loss_curve_png
from mmrecipe.mixture.build import build_mixture
from mmrecipe.mixture.token_shards import EOT_TOKEN, BpeTokenizer, load_tokenizer
from mmrecipe.proxy_eval.bits_per_byte import bits_per_byte
from mmrecipe.proxy_eval.evaluate import eval_results_verdict, evaluate_recipe
from mmrecipe.proxy_eval.model import ModelConfig, TinyGPT
from mmrecipe.proxy_eval.training import TrainConfig, resolve_device, train
from mmrecipe.recipe import parse_recipe

TINY = ModelConfig(context=32, d_model=32, n_layer=1, n_head=2)


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def stream(tiny_tok: BpeTokenizer) -> np.ndarray:
    return np.concatenate(
        [np.array([*tiny_tok.encode(topics[t]), tiny_tok.eot_id], dtype=np.uint16) for t in sorted(topics)[:30]]
    )


def test_untrained_model_scores_about_log2_vocab_bits_per_token(tiny_tok: BpeTokenizer) -> None:
    tok = tiny_tok
    torch.manual_seed(0)
    model = TinyGPT(ModelConfig(vocab_size=tok.vocab_size, context=64, d_model=32, n_layer=1, n_head=2))
    text = eval_text(3000)
    score = bits_per_byte(model, tok, text)
    assert score.tokens == len(tok.encode(text)) and score.utf8_bytes == len(text.encode("utf-8"))
    uniform = score.tokens * math.log2(tok.vocab_size) / score.utf8_bytes  # near-uniform logits at init
    assert score.bpb == pytest.approx(uniform, rel=0.02)


def test_training_lowers_the_loss_and_the_bits_per_byte(stream: np.ndarray, tiny_tok: BpeTokenizer) -> None:
    tok = tiny_tok
    cfg = ModelConfig(vocab_size=tok.vocab_size, context=32, d_model=32, n_layer=1, n_head=2)
    run = train(
        stream, cfg, TrainConfig(train_tokens=8 * 32 * 20, batch_size=8, lr=2e-2, log_every=5, threads=1), seed=0
    )
    assert run.steps == 20 and run.tokens_seen == 20 * 8 * 32
    assert [p["step"] for p in run.curve] == [0, 5, 10, 15, 19]
    start = math.log(tok.vocab_size)  # near-uniform logits at init
    assert run.curve[0]["loss"] == pytest.approx(start, rel=0.05) and run.final_loss < start - 0.75
    torch.manual_seed(0)
    untrained = bits_per_byte(TinyGPT(cfg), tok, eval_text(1500)).bpb
    assert bits_per_byte(run.model, tok, eval_text(1500)).bpb < untrained - 0.3


def test_same_seed_same_curve_other_seed_other_curve(stream: np.ndarray, tiny_tok: BpeTokenizer) -> None:
    cfg = TrainConfig(train_tokens=2 * 32 * 3, batch_size=2, log_every=1, threads=1)
    model = ModelConfig(vocab_size=tiny_tok.vocab_size, context=32, d_model=32, n_layer=1, n_head=2)
    a, b, c = (train(stream, model, cfg, seed=s) for s in (3, 3, 4))
    assert [p["loss"] for p in a.curve] == [p["loss"] for p in b.curve]
    assert [p["loss"] for p in a.curve] != [p["loss"] for p in c.curve]


def test_unknown_device_is_refused() -> None:
    with pytest.raises(ValueError, match="use 'cpu', 'cuda' or 'auto'"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal cannot happen")
def test_cuda_without_a_gpu_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="no CUDA device: set device to 'cpu'"):
        resolve_device("cuda")


def test_too_short_stream_is_refused() -> None:
    with pytest.raises(ValueError, match="needs at least context"):
        train(np.zeros(10, dtype=np.uint16), TINY, TrainConfig(), seed=0)


@pytest.mark.slow  # three GPT-2-vocabulary proxy models
def test_evaluate_recipe_writes_results_per_seed_and_eval_set(tmp_path: Path) -> None:
    lake, _ = build_lake(tmp_path, ["d1"])
    recipe = parse_recipe(recipe_text(total=6000), "/r/mix.yaml")
    build_mixture(lake, recipe, ["d1"], {"held_out": eval_text(2000), "other": eval_text(4000)[2000:]})
    train_cfg = TrainConfig(train_tokens=512, batch_size=4, lr=1e-2)
    out = evaluate_recipe(lake, "mix", TINY, train_cfg, seeds=[0, 1, 2], plot=loss_curve_png)
    rows = out.results.to_pylist()
    assert sorted((r["seed"], r["eval_set"]) for r in rows) == [
        (s, e) for s in (0, 1, 2) for e in ("held_out", "other")
    ]
    assert all(math.isfinite(r["bpb"]) and r["bpb"] > 0 and r["tokens_seen"] == 512 for r in rows)
    assert lake.exists(out.results_uri) and lake.exists(out.curves_uri)
    assert out.loss_png.startswith(b"\x89PNG")
    assert len(set(out.curves["seed"].to_pylist())) == 3
    verdict = eval_results_verdict(lake, "mix")
    assert verdict.passed, verdict.description
    assert verdict.description.startswith("3 seeds x 2 eval sets")
    # the mixture changes (new weights): the results on disk are now stale and the check says so
    reweighted = parse_recipe(recipe_text(total=6000, w_web=0.5, w_cap=0.25, w_speech=0.25), "/r/mix.yaml")
    build_mixture(lake, reweighted, ["d1"], {"held_out": eval_text(2000), "other": eval_text(4000)[2000:]})
    stale = eval_results_verdict(lake, "mix")
    assert not stale.passed and "re-evaluate" in stale.description
