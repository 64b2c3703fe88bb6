"""Building mixtures from upstream stage tables: shards, manifest, caches, determinism and the release checks."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from test_mixture_helpers import build_drop, build_lake, eval_text, photo_jpeg, recipe_text, topic_texts

from mmrecipe.mixture import token_shards
from mmrecipe.mixture.build import build_mixture, read_summary
from mmrecipe.mixture.checks import decontamination_verdict, lineage_verdict, token_share_verdict
from mmrecipe.mixture.manifest import read_manifest
from mmrecipe.mixture.sources import MixtureInputError
from mmrecipe.mixture.token_shards import gpt2_tokenizer_path, load_token_stream, load_tokenizer, read_token_index
from mmrecipe.mixture.webdataset import read_webdataset
from mmrecipe.recipe import parse_recipe
from mmrecipe.stage_output import committed_parts
from mmrecipe.storage import Storage
from mmrecipe.text.pii import PII_TYPES
from mmrecipe.warc_index import INDEX_SCHEMA
from tests.committed_edits import recommit

DROPS = ["d1", "d2"]


@pytest.fixture
def lake(tmp_path: Path) -> Storage:
    return build_lake(tmp_path, DROPS)[0]


def recipe(text: str, name: str = "mix"):
    return parse_recipe(text, f"/recipes/{name}.yaml")


def build(lake: Storage, text: str | None = None, evals: dict[str, str] | None = None, drops: list[str] = DROPS):
    return build_mixture(lake, recipe(text or recipe_text(total=12000)), drops, evals or {"held_out": eval_text()})


def file_hashes(lake: Storage, recipe_name: str = "mix") -> dict[str, str]:
    root = Path(lake.uri("mixture", recipe_name))
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_gpt2_tokenizer_loads_offline_with_gpt2_ids() -> None:
    tok = load_tokenizer("gpt2")
    assert tok.eot_id == 50256 and tok.dtype == np.dtype("<u2")
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode("a <|endoftext|> b") == [64, 1279, 91, 437, 1659, 5239, 91, 29, 275]  # no injected EOT
    assert [list(x) for x in tok.encode_batch(["Hello world", " the"])] == [[15496, 995], [262]]
    whisper_special = "<|startoftranscript|><|en|><|notimestamps|>"  # added tokens of the shipped file, ids > 50256
    assert max(tok.encode(whisper_special)) < tok.vocab_size == 50257


def test_mixture_files_manifest_and_token_shards(lake: Storage) -> None:
    result = build(lake)
    s = result.summary
    manifest = read_manifest(lake, "mix")
    assert manifest.num_rows == s["documents"] > 0
    assert set(manifest["source"].to_pylist()) == {"web_en", "captions", "speech"}
    assert all(d.startswith("mix:") for d in manifest["doc_id"].to_pylist())
    # the first page of each drop was dropped upstream (robots noai) and never reaches the mixture
    assert s["upstream_rejects"]["extracted_text"] == {"dropped:opt_out": 2}
    assert "| opt-out | extracted_text | dropped:opt_out | 2 |" in result.data_card
    assert s["pii_redacted"] == {"extracted_text": dict.fromkeys(PII_TYPES, 0) | {"email": 4, "phone": 2}}
    assert "| PII | extracted_text | redacted:email | 4 |" in result.data_card
    # 11 kept pages per drop, 2 of them German; of the 18 English ones (quality i/11, i = 1..9, twice) the
    # 30th percentile is 3.1/11, so the 6 with i <= 3 are excluded and 12 remain candidates
    web = next(src for src in s["sources"] if src["name"] == "web_en")
    assert web["excluded_by_filter"] == {"empty_text": 0, "language": 4, "min_quality_percentile": 6}
    assert web["candidates"] == 12 and web["thresholds"]["quality_score"] == pytest.approx(3.1 / 11, abs=1e-3)
    header = read_token_index(lake, "mixture/mix/tokens")
    stream = load_token_stream(lake, "mixture/mix/tokens")
    assert header["dtype"] == "uint16" and header["eot_id"] == 50256 and stream.dtype == np.uint16
    tok = load_tokenizer("gpt2")
    assert header["vocab_size"] == tok.vocab_size == 50257  # GPT-2's, not the 50363 of the file's added tokens
    assert (header["tokenizer"], header["tokenizer_file"]) == ("gpt2", "tokenizer.json")
    assert header["tokenizer_sha256"] == hashlib.sha256(gpt2_tokenizer_path().read_bytes()).hexdigest()
    assert int(stream.max()) < header["vocab_size"] and int(stream.max()) == 50256  # every id, EOT included
    copies = int(pc.sum(manifest["epochs"]).as_py())
    assert header["documents"] == copies
    assert len(stream) == header["tokens"] == s["achieved_tokens"] + copies  # + one end-of-text per copy
    # every document copy in the stream decodes back to its upstream text
    index = lake.read_table(lake.uri("mixture", "mix", "tokens", "index.parquet")).to_pylist()
    text_sha = dict(zip(manifest["doc_id"].to_pylist(), manifest["text_sha256"].to_pylist(), strict=True))
    for row in index[:40]:
        ids = stream[row["token_offset"] : row["token_offset"] + row["token_count"]]
        assert ids[-1] == 50256
        assert hashlib.sha256(tok.decode(ids[:-1]).encode()).hexdigest() == text_sha[row["doc_id"]]


def test_webdataset_shards_hold_the_selected_image_caption_pairs(lake: Storage) -> None:
    build(lake)
    data = Path(lake.uri("mixture", "mix", "webdataset", "images-000000.tar")).read_bytes()
    samples = read_webdataset(data)
    assert len(samples) == 4
    for s in samples:
        assert s["jpg"] == photo_jpeg() and s["txt"].startswith(b"Portrait of Grace Hopper")
        meta = json.loads(s["json"])
        assert meta["doc_id"].startswith("mix:captions:") and meta["warc_offset"] > 0


def test_rebuild_is_byte_identical(lake: Storage) -> None:
    build(lake)
    first = file_hashes(lake)
    assert "mixture.json" in first and "tokens/shard-00000.bin" in first and "data_card.md" in first
    build(lake)  # same inputs, caches reused
    assert file_hashes(lake) == first
    shutil.rmtree(lake.uri("mixture"))
    shutil.rmtree(lake.uri("token_cache"))
    build(lake)  # from scratch: re-tokenized
    assert file_hashes(lake) == first


def test_reweight_resamples_from_token_caches_without_tokenizing(
    lake: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(lake)
    assert first.cache_stats["token_caches_reused"] == 0 and first.cache_stats["token_caches_built"] == 6
    assert first.cache_stats["tokens_tokenized"] > first.summary["achieved_tokens"] // 4

    def no_tokenizing(*_: object) -> None:
        raise AssertionError("re-weighting must not re-tokenize")

    monkeypatch.setattr(token_shards.BpeTokenizer, "encode_batch", no_tokenizing)
    second = build(lake, recipe_text(total=12000, w_web=0.6, w_cap=0.2, w_speech=0.2))
    assert second.cache_stats["token_caches_reused"] == 6 and second.cache_stats["token_caches_built"] == 0
    shares = {src["name"]: src["achieved_share"] for src in second.summary["sources"]}
    assert shares == pytest.approx({"web_en": 0.6, "captions": 0.2, "speech": 0.2}, abs=0.03)
    assert second.summary["version"] != first.summary["version"]


def test_a_new_drop_tokenizes_only_its_own_partitions(lake: Storage, tmp_path: Path) -> None:
    build(lake)
    build_drop(lake, Storage(str(tmp_path / "landing")), "d3", topic_texts(30, 8))
    result = build(lake, drops=["d1", "d2", "d3"])
    assert result.cache_stats["token_caches_reused"] == 6 and result.cache_stats["token_caches_built"] == 3
    assert {i["drop"] for i in result.summary["inputs"]} == {"d1", "d2", "d3"}


def test_missing_upstream_partition_names_what_to_materialize(lake: Storage) -> None:
    with pytest.raises(MixtureInputError, match=r"not materialized: extracted_text\[d9\], deduped_images\[d9\]"):
        build(lake, drops=["d1", "d9"])


def test_source_without_candidates_is_an_error(lake: Storage) -> None:
    text = recipe_text(total=12000).replace("languages: [en]", "languages: [ja]")
    with pytest.raises(MixtureInputError, match="source 'web_en' has no candidate documents"):
        build(lake, text)


def test_checks_pass_on_a_clean_mixture(lake: Storage) -> None:
    build(lake)
    for verdict in (
        token_share_verdict(lake, "mix"),
        decontamination_verdict(lake, "mix"),
        lineage_verdict(lake, "mix"),
    ):
        assert verdict.passed, verdict.description
        assert verdict.metadata["mixture_version"] == read_summary(lake, "mix")["version"]


def test_decontamination_check_fails_on_a_planted_overlap(lake: Storage) -> None:
    manifest_text = topic_texts(12, 12)[6][1]  # a d2 page that the recipe selects
    build(lake, evals={"held_out": eval_text() + "\n\n" + manifest_text})
    verdict = decontamination_verdict(lake, "mix")
    assert not verdict.passed
    assert verdict.description.startswith("held_out: ") and "occur in the mixture" in verdict.description
    assert "mix:web_en:" in verdict.description
    assert verdict.metadata["worst_overlap"] > 0.01


def test_share_check_fails_when_a_source_cannot_reach_its_share(lake: Storage) -> None:
    text = recipe_text(total=12000, w_web=0.5, w_cap=0.4, w_speech=0.1).replace("max_epochs: 40", "max_epochs: 2")
    text = text.replace("seed: 7", "seed: 7\nwhen_short: redistribute")
    result = build(lake, text)
    assert {s["name"] for s in result.summary["sources"] if s["too_small"]} == {"captions", "speech"}
    verdict = token_share_verdict(lake, "mix")
    assert not verdict.passed and "captions" in verdict.description and "vs target 0.400" in verdict.description


def test_lineage_check_fails_when_a_raw_crawl_record_is_gone(lake: Storage) -> None:
    build(lake)
    manifest = read_manifest(lake, "mix")
    victim = manifest.filter(pc.equal(manifest["drop"], "d1"))["record_id"][0].as_py()
    uri = committed_parts(lake, "raw_crawl", "d1")[0]
    index = lake.read_table(uri)
    lake.write_table(uri, index.filter(pc.not_equal(index["record_id"], victim)).cast(INDEX_SCHEMA))
    recommit(lake, uri)
    verdict = lineage_verdict(lake, "mix")
    assert not verdict.passed and verdict.metadata["unresolved"] == 1
    assert f"no raw_crawl[d1] record {victim}" in verdict.description
