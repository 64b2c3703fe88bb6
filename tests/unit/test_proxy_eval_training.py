"""Proxy models: training on real text lowers the loss, is seeded, and bits per byte are computed honestly."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_mixture_helpers import build_lake, eval_text, recipe_text

from data_assets.plots import loss_curve_png
from mmrecipe.mixture.build import build_mixture
from mmrecipe.mixture.token_shards import BpeTokenizer
from mmrecipe.proxy_eval.bits_per_byte import bits_per_byte, document_bits, eval_documents
from mmrecipe.proxy_eval.evaluate import EvalPlan, Grid, eval_results_verdict, evaluate_recipe
from mmrecipe.proxy_eval.model import ModelConfig, TinyGPT
from mmrecipe.proxy_eval.presets import eval_preset, with_overrides
from mmrecipe.proxy_eval.training import TrainConfig, resolve_device, train
from mmrecipe.recipe import parse_recipe


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


def test_a_runs_thread_count_does_not_leak_into_the_next_caller(stream: np.ndarray, tiny_tok: BpeTokenizer) -> None:
    before = torch.get_num_threads()  # run keys name the thread count: a leaked setting would change later keys
    model = ModelConfig(vocab_size=tiny_tok.vocab_size, context=32, d_model=32, n_layer=1, n_head=2)
    train(stream, model, TrainConfig(train_tokens=2 * 32, batch_size=2, threads=before + 1), seed=0)
    assert torch.get_num_threads() == before


def test_unknown_device_is_refused() -> None:
    with pytest.raises(ValueError, match="use 'cpu', 'cuda' or 'auto'"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal cannot happen")
def test_cuda_without_a_gpu_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="no CUDA device: set device to 'cpu'"):
        resolve_device("cuda")


def test_eval_documents_are_packed_paragraphs_that_rebuild_the_text() -> None:
    text = eval_text(5000)
    docs = eval_documents(text, min_bytes=512)
    assert "".join(docs) == text and len(docs) > 3
    assert all(len(d.encode()) >= 512 for d in docs)
    assert eval_documents("short") == ["short"] and eval_documents("") == []


def test_document_scores_add_up_to_the_stream_and_follow_each_document(tiny_tok: BpeTokenizer) -> None:
    torch.manual_seed(0)
    model = TinyGPT(ModelConfig(vocab_size=tiny_tok.vocab_size, context=32, d_model=32, n_layer=1, n_head=2))
    docs = eval_documents(eval_text(3000), min_bytes=400)
    scored = document_bits(model, tiny_tok, docs)
    assert [s.tokens for s in scored] == [len(tiny_tok.encode(d)) for d in docs]
    assert [s.utf8_bytes for s in scored] == [len(d.encode()) for d in docs]
    assert all(s.nll_bits > 0 for s in scored)
    # the first document is scored as a text of its own would be (same context: end-of-text, then its tokens)
    assert scored[0].nll_bits == pytest.approx(bits_per_byte(model, tiny_tok, docs[0]).nll_bits, rel=1e-6)


def test_scoring_in_a_reused_logits_buffer_gives_the_training_loss_per_token() -> None:
    torch.manual_seed(0)
    model = TinyGPT(ModelConfig(vocab_size=50257, context=32, d_model=32, n_layer=1, n_head=2)).eval()
    ids = torch.randint(0, 50257, (4, 33))
    buffer = torch.full((4 * 32, 50257), float("nan"))  # reused: the second, shorter call must not read stale rows
    for x, y in ((ids[:, :-1], ids[:, 1:]), (ids[:1, :20], ids[:1, 1:21])):
        with torch.no_grad():
            logits = model(x)
            expected = torch.nn.functional.cross_entropy(logits.view(-1, 50257), y.reshape(-1), reduction="none")
        nats = model.token_nats(x, y, buffer)
        assert nats.shape == expected.shape and not nats.requires_grad
        torch.testing.assert_close(nats, expected, rtol=1e-5, atol=1e-5)
        assert float(nats.mean()) == pytest.approx(float(model.loss(x, y)), rel=1e-6)


def test_the_gpu_ladder_preset_hands_cuda_and_bfloat16_to_torch(stream: np.ndarray, tiny_tok: BpeTokenizer) -> None:
    ladder = eval_preset("dclm_400m_1x")
    model = ModelConfig(vocab_size=50257, context=ladder.context, d_model=ladder.d_model, n_layer=ladder.n_layer)
    with torch.device("meta"):  # the shape only: no 1.6 GB of weights on this machine
        parameters = TinyGPT(model).num_parameters()  # DCLM 400M-1x: about 412M
    assert 3.5e8 < parameters < 4.5e8
    assert ladder.train_tokens == pytest.approx(20 * 412e6, rel=0.01)  # Chinchilla 1x
    assert (ladder.device, ladder.dtype, ladder.runs) == ("cuda", "bfloat16", 6)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            train(stream, model, TrainConfig(device=ladder.device, dtype=ladder.dtype), seed=0)
    # the same preset shrunk to this CPU: bfloat16 reaches torch's autocast, the weights stay float32
    small, label = with_overrides(ladder, {"context": 32, "d_model": 32, "n_layer": 1, "n_head": 2, "device": "cpu"})
    assert label == "dclm_400m_1x (changed: context, d_model, device, n_head, n_layer)"
    seen: list[torch.dtype] = []
    cfg = ModelConfig(vocab_size=tiny_tok.vocab_size, context=small.context, d_model=small.d_model, n_layer=1, n_head=2)
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: seen.append(o.dtype) if isinstance(m, torch.nn.Linear) else None
    )
    try:
        run = train(stream, cfg, TrainConfig(train_tokens=64, batch_size=2, device=small.device, dtype=small.dtype), 0)
    finally:
        handle.remove()
    assert run.dtype == "bfloat16" and seen and set(seen) == {torch.bfloat16}
    assert run.model is not None and {p.dtype for p in run.model.parameters()} == {torch.float32}
    with pytest.raises(ValueError, match=r"dtype 'fp8': use one of \['bfloat16', 'float32'\]"):
        train(stream, cfg, TrainConfig(dtype="fp8"), seed=0)


def test_too_short_stream_is_refused() -> None:
    with pytest.raises(ValueError, match="needs at least context"):
        train(np.zeros(10, dtype=np.uint16), TINY, TrainConfig(), seed=0)


TINY = ModelConfig(context=32, d_model=32, n_layer=1, n_head=2)


@pytest.mark.slow  # three GPT-2-vocabulary proxy models
def test_evaluate_recipe_writes_results_per_seed_and_eval_set(tmp_path: Path) -> None:
    lake, _ = build_lake(tmp_path, ["d1"])
    recipe = parse_recipe(recipe_text(total=6000), "/r/mix.yaml")
    eval_sets = {"held_out": eval_text(2000), "other": eval_text(4000)[2000:]}
    build_mixture(lake, recipe, ["d1"], eval_sets)
    train_cfg = TrainConfig(train_tokens=512, batch_size=4)
    plan = EvalPlan(TINY, train_cfg, Grid((0, 1, 2), (3e-3, 1e-2)))
    out = evaluate_recipe(lake, "mix", plan, plot=loss_curve_png)
    rows = out.results.to_pylist()
    assert sorted((r["lr"], r["seed"], r["eval_set"]) for r in rows) == [
        (lr, s, e) for lr in (3e-3, 1e-2) for s in (0, 1, 2) for e in ("held_out", "other")
    ]
    assert all(math.isfinite(r["bpb"]) and r["bpb"] > 0 and r["tokens_seen"] == 512 for r in rows)
    assert lake.exists(out.results_uri) and lake.exists(out.curves_uri)
    docs = lake.read_table(lake.uri("eval_results", "mix", "doc_losses.parquet")).to_pylist()
    for r in rows:  # the per-document losses add up to the eval set's score
        mine = [d for d in docs if (d["lr"], d["seed"], d["eval_set"]) == (r["lr"], r["seed"], r["eval_set"])]
        assert len(mine) == len(eval_documents(eval_sets[r["eval_set"]])) > 1
        assert sum(d["nll_bits"] for d in mine) == pytest.approx(r["nll_bits"])
        assert sum(d["utf8_bytes"] for d in mine) == r["utf8_bytes"]
    assert out.loss_png.startswith(b"\x89PNG")
    assert sorted(
        set(zip(out.grid.curves["peak_lr"].to_pylist(), out.grid.curves["seed"].to_pylist(), strict=True))
    ) == [(lr, s) for lr in (3e-3, 1e-2) for s in (0, 1, 2)]
    verdict = eval_results_verdict(lake, "mix")
    assert verdict.passed, verdict.description
    assert verdict.description.startswith("3 seeds x 2 lrs x 2 eval sets")
    # the mixture changes (new weights): the results on disk are now stale and the check says so
    reweighted = parse_recipe(recipe_text(total=6000, w_web=0.5, w_cap=0.25, w_speech=0.25), "/r/mix.yaml")
    build_mixture(lake, reweighted, ["d1"], {"held_out": eval_text(2000), "other": eval_text(4000)[2000:]})
    stale = eval_results_verdict(lake, "mix")
    assert not stale.passed and "re-evaluate" in stale.description
