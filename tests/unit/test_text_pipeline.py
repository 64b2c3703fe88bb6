"""The per-document text stage end to end in mmrecipe: a real WARC, real models, every record's outcome."""

from collections.abc import Callable, Iterator
from pathlib import Path
from pydoc_data.topics import topics

import pyarrow.compute as pc
import pytest

from mmrecipe.crawl_index import index_drop, read_records
from mmrecipe.dedup import BandIndex
from mmrecipe.dedup.band_index import BUCKETS_FILE, RECORDS_FILE
from mmrecipe.engine import Engine, LocalEngine, RayEngine
from mmrecipe.stage_output import (
    PROVENANCE_COLUMNS,
    REJECTS,
    StageOutput,
    commit_uri,
    committed_parts,
    read_stage_table,
)
from mmrecipe.storage import Storage
from mmrecipe.text.dedup_stage import dedup_drop
from mmrecipe.text.extraction import EXTRACTORS
from mmrecipe.text.pipeline import TextStageConfig, TextStageReport, filter_drop, quality_bins
from mmrecipe.text.quality_classifier import ClassifierInfo, QualityScorer, TrainingParams, train_classifier
from mmrecipe.text.quality_rules import RuleResult, RuleThresholds
from tests.committed_edits import recommit
from tests.warc_fixtures import HttpResponse, warc_bytes

GOOD = ["exceptions", "execmodel", "customization", "naming", "import", "assignment", "function", "class"]
RANT = (
    "You are a fucking idiot and everybody on this damn forum knows it. Shut the fuck up about the release. "
    "Your patches are shit and your reviews are bullshit, you stupid asshole. Nobody wants your crap here. "
    "Get the hell out of the project and take your garbage code with you, moron. What a pathetic loser. "
    "Every single thing you post is stupid shit that wastes the time of the people who do the real work. "
    "Go away and never come back, you worthless piece of shit, and stop whining about the damn tests."
)
CONTACT = (
    "\n\nContact the maintainers at jane.doe@example.org or +1 415-555-0132. The mirror runs on 192.0.2.44 "
    "and 2001:db8::8a2e:370:7334. Donations: card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32. "
    "Not personal data: Python 3.11.2.1 and the test number 4111 1111 1111 1112."
)


LATIN1_CALLS = topics["calls"].translate(str.maketrans("‘’“”…–—", "''\"\"_--"))  # keeps its "°F"


def html(text: str, head: str = "") -> str:
    paragraphs = "".join(f"<p>{p}</p>" for p in text.split("\n\n") if p.strip())
    return f"<html><head><title>Python</title>{head}</head><body><main>{paragraphs}</main></body></html>"


def url(name: str) -> str:
    return f"http://docs.example.org/reference/{name}.html"


def responses() -> list[HttpResponse]:
    out = [HttpResponse(url(name), html(topics[name]).encode()) for name in GOOD]
    out += [
        HttpResponse(url("calls-latin1"), html(LATIN1_CALLS).encode("latin-1"), "text/html; charset=utf-8"),
        HttpResponse(url("missing"), html(topics["exceptions"]).encode(), status=404),
        HttpResponse(url("noai"), html(topics["binary"]).encode(), headers={"X-Robots-Tag": "noai"}),
        HttpResponse(
            url("noimageai"), html(topics["identifiers"], '<meta name="robots" content="noimageai">').encode()
        ),
        HttpResponse(url("empty"), b""),
        HttpResponse(url("script-only"), b"<html><body><script>var a = 1;</script></body></html>"),
        HttpResponse(url("numbers"), html("\n".join(f"{i:08x} {i * 7919 % 65536:04x}" for i in range(300))).encode()),
        HttpResponse(url("short"), html(" ".join(topics["exceptions"].split()[40:75])).encode()),
        HttpResponse(url("pii"), html(topics["exceptions"] + CONTACT).encode()),
        HttpResponse(url("rant"), html(RANT).encode()),
        HttpResponse(url("unreadable"), html(topics["global"]).encode()),
    ]
    return out


def land_and_index(tmp_path: Path) -> tuple[Storage, Storage]:
    """A landing folder with one WARC and its raw_crawl index; the `unreadable` row's length is corrupted."""
    landing, lake = Storage(str(tmp_path / "landing")), Storage(str(tmp_path / "lake"))
    landing.write_bytes(landing.uri("d1", "crawl.warc.gz"), warc_bytes(responses()))
    index_drop(landing, lake, "d1", ["crawl.warc.gz"])
    uri = committed_parts(lake, "raw_crawl", "d1")[0]
    index = lake.read_table(uri)
    short = pc.if_else(pc.equal(index["target_uri"], url("unreadable")), pc.subtract(index["warc_length"], 10),
                       index["warc_length"])  # fmt: skip
    lake.write_table(uri, index.set_column(index.schema.get_field_index("warc_length"), "warc_length", short))
    recommit(lake, uri)
    return lake, landing


@pytest.fixture(scope="module")
def scorer() -> QualityScorer:
    negatives = [
        " ".join(sorted(set(topics[n].split()))) for n in ("lists", "operator-summary", "specialnames", "typesseq")
    ]
    model = train_classifier([topics[n] for n in GOOD[:4]], negatives, TrainingParams(dim=16, bucket=20_000))
    return QualityScorer(model, ClassifierInfo("test", {}, 4, 4, "test", 0, quantiles=[0.0] * 101))


def run(
    tmp_path: Path, scorer: QualityScorer, workers: int = 1, shard_bytes: int = 1 << 30, **config: object
) -> tuple[StageOutput, TextStageReport, Storage]:
    """The drop through filtered_text on the local engine; the whitespace rules unless `rules_preset` says
    otherwise (its Python documentation pages pass those; datatrove's rules drop them for their code: see
    test_english_pages_get_datatroves_verdicts_by_default)."""
    config.setdefault("rules_preset", "whitespace")
    lake, landing = land_and_index(tmp_path)
    stage = TextStageConfig(**config)  # type: ignore[arg-type]
    result, report = filter_drop(LocalEngine(workers), lake, landing, "d1", stage, scorer, shard_bytes)
    return result.output, report, lake


def outcomes(lake: Storage, result: StageOutput) -> Iterator[tuple[str, str]]:
    rejects = lake.read_table(result.rejects_uri).to_pylist()
    by_offset = {r["warc_offset"]: r["target_uri"] for r in read_records(lake, "d1", "html").to_pylist()}
    for r in rejects:
        yield by_offset[r["warc_offset"]].rsplit("/", 1)[1].removesuffix(".html"), r["reason"]


def test_every_record_gets_its_outcome(tmp_path: Path, scorer: QualityScorer) -> None:
    result, report, lake = run(tmp_path, scorer, toxicity_threshold=0.5)
    assert dict(outcomes(lake, result)) == {
        "missing": "http_status",
        "noai": "opt_out",
        "empty": "empty_payload",
        "script-only": "empty_text",
        "numbers": "low_language_score",
        "short": "gopher_short_doc",
        "rant": "toxic",
        "unreadable": "unreadable_record",
    }
    kept = lake.read_table(result.data_uri)
    names = [u.rsplit("/", 1)[1].removesuffix(".html") for u in kept["url"].to_pylist()]
    assert names == [*GOOD, "calls-latin1", "noimageai", "pii"]
    assert result.counts.kept == 11 and result.counts.total == 19
    assert result.counts.rejected == {"empty_payload": 1, "unreadable_record": 1}
    assert kept["warc_offset"].to_pylist() == sorted(kept["warc_offset"].to_pylist())
    assert set(kept["language"].to_pylist()) == {"en"} and pc.min(kept["language_score"]).as_py() >= 0.65
    assert kept["noimageai"].to_pylist() == [n == "noimageai" for n in names]
    assert set(kept["extractor"].to_pylist()) == {"resiliparse"}
    row = {n: r for n, r in zip(names, kept.to_pylist(), strict=True)}
    assert '"max-temp °F"' in row["calls-latin1"]["text"] and row["calls-latin1"]["charset_source"] == "detected"
    pii = row["pii"]
    assert pii["pii_counts"] == {
        "email": 1,
        "phone": 1,
        "ipv4": 1,
        "ipv6": 1,
        "payment_card": 1,
        "iban": 1,
        "us_ssn": 0,
    }
    assert "jane.doe@example.org" not in pii["text"] and "<EMAIL>" in pii["text"] and "<IBAN>" in pii["text"]
    assert "Python 3.11.2.1" in pii["text"] and "4111 1111 1111 1112" in pii["text"]
    assert row["exceptions"]["pii_counts"] == dict.fromkeys(pii["pii_counts"], 0)
    assert row["exceptions"]["n_words"] > 0 and row["exceptions"]["dup_line_frac"] == 0.0
    index = lake.read_table(BandIndex(lake, "filtered_text").uri("d1"))  # written by filter_drop from the shards
    assert index["record_id"].to_pylist() == kept["record_id"].to_pylist() and report.index_version
    assert report.languages == {"en": 11} and sum(report.quality_bins) == 12  # the rant was scored, then dropped
    kept_bins = quality_bins(kept["quality_score"].to_pylist())  # the kept documents' scores are in their bins
    assert len(kept_bins) == len(report.quality_bins) == 20 and sum(kept_bins) == 11
    assert all(k <= r for k, r in zip(kept_bins, report.quality_bins, strict=True))


def test_quality_threshold_drops_the_lowest_scores(tmp_path: Path, scorer: QualityScorer) -> None:
    first, _, lake = run(tmp_path / "all", scorer, toxicity_threshold=1.0)
    scores = sorted(lake.read_table(first.data_uri)["quality_score"].to_pylist())
    cut = (scores[1] + scores[2]) / 2
    result, _, lake = run(tmp_path / "cut", scorer, toxicity_threshold=1.0, quality_min_score=cut)
    assert result.counts.dropped["low_quality_score"] == 2
    assert pc.min(lake.read_table(result.data_uri)["quality_score"]).as_py() >= cut


@pytest.mark.slow  # process pools of 1..n workers, and run after run
@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_outputs_are_deterministic_for_any_number_of_workers_and_run_after_run(
    tmp_path: Path, scorer: QualityScorer, extractor: str
) -> None:
    config = {"batch_size": 4, "extractor": extractor, "toxicity_threshold": 1.0}
    a, report_a, lake_a = run(tmp_path / "a", scorer, **config)
    runs = [
        run(tmp_path / "b", scorer, **config, workers=2, shard_bytes=4_000),
        run(tmp_path / "c", scorer, **config),
    ]  # c: this process again
    for b, report_b, lake_b in runs:
        for uri_a, uri_b in ((a.data_uri, b.data_uri), (a.rejects_uri, b.rejects_uri)):
            ta, tb = lake_a.read_table(uri_a), lake_b.read_table(uri_b)
            columns = [c for c in ta.column_names if c not in ("warc_path", "detail")]  # paths differ between runs
            assert ta.num_rows and ta.select(columns).equals(tb.select(columns))
        assert report_a.quality_bins == report_b.quality_bins and report_a.languages == report_b.languages
        assert report_a.index_version == report_b.index_version


def test_trafilatura_is_recorded_as_the_extractor(tmp_path: Path, scorer: QualityScorer) -> None:
    result, _, lake = run(tmp_path, scorer, extractor="trafilatura", toxicity_threshold=1.0)
    kept = lake.read_table(result.data_uri)
    assert kept.num_rows >= 8 and set(kept["extractor"].to_pylist()) == {"trafilatura"}


@pytest.mark.parametrize("preset", ["multilingual", "fineweb"])
def test_english_pages_get_datatroves_verdicts_by_default(tmp_path: Path, scorer: QualityScorer, preset: str) -> None:
    """datatrove counts each punctuation mark of these documentation pages' code as a word: most fail its
    alpha-word ratio, which the whitespace rules (the other tests here) let them pass."""
    result, _, lake = run(tmp_path, scorer, toxicity_threshold=0.5, rules_preset=preset)
    outcome = dict(outcomes(lake, result))
    code_pages = [*GOOD[1:], "calls-latin1", "noimageai", "pii"]
    assert {name: outcome[name] for name in code_pages} == dict.fromkeys(code_pages, "gopher_alpha_words")
    assert outcome["short"] == "gopher_short_doc" and outcome["rant"] == "toxic"
    kept = lake.read_table(result.data_uri)
    assert [u.rsplit("/", 1)[1] for u in kept["url"].to_pylist()] == ["exceptions.html"]
    assert TextStageConfig(rules_preset=preset).allowed_languages == (("en",) if preset == "fineweb" else ())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"extractor": "justext"}, "unknown extractor 'justext'"),
        ({"language_thresholds": {"de": {"min_doc_wordz": 5}}}, r"language_thresholds\['de'\]: unknown"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"rules_preset": "gopher"}, "unknown rules_preset 'gopher'"),
        ({"rules_preset": "fineweb", "languages": ("en", "de")}, "rules_preset 'fineweb' keeps English only"),
    ],
)
def test_config_mistakes_fail_before_any_record(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TextStageConfig(**config)


def test_a_repeated_text_reuses_its_verdict_with_the_same_output(
    tmp_path: Path, scorer: QualityScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages whose extracted text repeats (mirrors) are decided once; every copy gets the full row or reason."""
    from mmrecipe.text import pipeline

    mirrors = [
        HttpResponse(f"http://mirror.example.net/{name}.html", html(text).encode())
        for name, text in (("pii", topics["exceptions"] + CONTACT), ("rant", RANT), ("short", topics["naming"][:300]))
    ]
    landing, lake = Storage(str(tmp_path / "landing")), Storage(str(tmp_path / "lake"))
    landing.write_bytes(landing.uri("d1", "crawl.warc.gz"), warc_bytes(responses() + mirrors))
    index_drop(landing, lake, "d1", ["crawl.warc.gz"])
    calls: list[str] = []
    real_rules_for = pipeline.rules_for

    def counted_rules_for(preset: str, language: str) -> Callable[[str, RuleThresholds], RuleResult]:
        return lambda text, t: calls.append(text) or real_rules_for(preset, language)(text, t)

    monkeypatch.setattr(pipeline, "rules_for", counted_rules_for)
    config = TextStageConfig(batch_size=3, toxicity_threshold=0.5, rules_preset="whitespace")
    run_, report = filter_drop(LocalEngine(1), lake, landing, "d1", config, scorer)
    result = run_.output
    assert len(calls) == len(set(calls))  # no text went through the rules twice, across batches too
    assert report.repeated_texts == 2  # the pii and rant mirrors (the short mirror is a page of its own)
    rows = [r for r in lake.read_table(result.data_uri).to_pylist() if r["url"].endswith("/pii.html")]
    assert len(rows) == 2 and {r["url"] for r in rows} == {url("pii"), "http://mirror.example.net/pii.html"}
    original, mirror = rows
    assert original["record_id"] != mirror["record_id"]
    same = [c for c in original if c not in [*PROVENANCE_COLUMNS, "warc_length", "url"]]
    assert {c: original[c] for c in same} == {c: mirror[c] for c in same}
    assert mirror["pii_counts"]["email"] == 1 and "<EMAIL>" in mirror["text"]
    reasons = {r["warc_offset"]: r["reason"] for r in lake.read_table(result.rejects_uri).to_pylist()}
    by_uri = {r["target_uri"]: r["warc_offset"] for r in read_records(lake, "d1", "html").to_pylist()}
    assert reasons[by_uri["http://mirror.example.net/rant.html"]] == reasons[by_uri[url("rant")]] == "toxic"
    assert reasons[by_uri["http://mirror.example.net/short.html"]] == "gopher_short_doc"
    assert sum(report.quality_bins) == 13 + 2  # 13 as in the drop above (its "unreadable" page is intact here)
    # plus the pii and rant copies: each scored once, reported for both records


def _both_stages(lake: Storage, landing: Storage, scorer: QualityScorer, engine: Engine, shard_bytes: int) -> dict:
    """filtered_text and extracted_text of d1 on `engine`: their tables, commit files and shard counts."""
    config = TextStageConfig(batch_size=4, toxicity_threshold=0.5, rules_preset="whitespace")
    filtered, _ = filter_drop(engine, lake, landing, "d1", config, scorer, shard_bytes)
    index = BandIndex(lake, "filtered_text")  # written by filter_drop, bucket range by bucket range
    extracted, _ = dedup_drop(engine, lake, "d1", index)
    out = {"shards": (filtered.shards_total, extracted.shards_total), "steps": filtered.metadata()}
    out["index"] = [lake.read_bytes(index.uri("d1", name)) for name in (RECORDS_FILE, BUCKETS_FILE)]
    for asset in ("filtered_text", "extracted_text"):
        out[asset] = [read_stage_table(lake, asset, "d1", tree) for tree in ("data", REJECTS)]
        out[f"{asset}_commit"] = lake.read_bytes(commit_uri(lake, asset, "d1"))
    return out


def test_text_stages_are_identical_across_shard_sizes(tmp_path: Path, scorer: QualityScorer) -> None:
    """filtered_text and extracted_text have the same tables whatever the shard size (one shard, or many)."""
    lake, landing = land_and_index(tmp_path)
    whole = _both_stages(lake, landing, scorer, LocalEngine(1), 1 << 30)
    assert whole["shards"] == (1, 1)
    assert whole["filtered_text"][0].num_rows >= 8 and whole["extracted_text"][0].num_rows >= 8
    small = _both_stages(lake, landing, scorer, LocalEngine(1), 4_000)
    assert small["shards"][0] > 2 and small["shards"][1] == small["shards"][0]  # one extracted shard per part
    for asset in ("filtered_text", "extracted_text"):
        assert all(a.equals(b) for a, b in zip(whole[asset], small[asset], strict=True)), asset
    assert whole["index"] == small["index"]  # the dedup index files, byte for byte
    steps = whole["steps"]
    assert steps["step_read_in"] == len(responses()) and steps["step_read_rejected_unreadable_record"] == 1
    assert steps["step_toxicity_dropped_toxic"] == 1 and steps["step_quality_rules_in"] > 0
    # the same per-step counts, summed over shards (this drop repeats no text: with repeats, how many go through
    # the text steps and how many through `repeated_text` depends on the shards, as verdicts are kept per shard)
    counts = [{k: v for k, v in m.items() if k.startswith("step_") and not k.endswith("_seconds")} for m in
              (steps, small["steps"])]  # fmt: skip
    assert counts[0] == counts[1] and "step_repeated_text_in" in counts[0]


@pytest.mark.slow  # process pools and a local Ray
def test_text_stages_are_identical_across_worker_counts_and_engines(
    tmp_path: Path, scorer: QualityScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bytes in every part for the same shard plan on 1 or 2 workers and on Ray; the same tables with
    one shard per record."""
    import ray

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))  # Ray workers import mmrecipe
    lake, landing = land_and_index(tmp_path)
    inline = _both_stages(lake, landing, scorer, LocalEngine(1), 4_000)
    pooled = _both_stages(lake, landing, scorer, LocalEngine(2), 4_000)
    per_record = _both_stages(lake, landing, scorer, LocalEngine(2), 1)
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        on_ray = _both_stages(lake, landing, scorer, RayEngine(), 4_000)
    finally:
        ray.shutdown()
    for asset in ("filtered_text", "extracted_text"):
        assert pooled[f"{asset}_commit"] == inline[f"{asset}_commit"] == on_ray[f"{asset}_commit"], asset
        assert all(a.equals(b) for a, b in zip(inline[asset], per_record[asset], strict=True)), asset
    assert pooled["index"] == inline["index"] == on_ray["index"] == per_record["index"]
    assert per_record["shards"][0] == inline["filtered_text"][0].num_rows + inline["filtered_text"][1].num_rows
