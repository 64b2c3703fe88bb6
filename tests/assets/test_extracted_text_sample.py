"""The sample drops through raw_crawl → quality_classifier → filtered_text → extracted_text.

The default config but the `whitespace` rules preset, under which the sample's documentation pages (among them
the planted PII page and planted duplicates) pass the rules: datatrove's rules, the default for English, drop most
of them for their code before PII redaction and dedup could show anything (tests/unit/test_text_pipeline.py and
tests/reference/ test the default rules).
"""

import json
from pathlib import Path

import dagster as dg
import pytest

from mmrecipe.dedup.band_index import BandIndex
from mmrecipe.settings import Settings
from mmrecipe.stage_output import REJECTS, read_stage_table
from mmrecipe.storage import Storage
from mmrecipe.text.classifier_data import default_reference_texts, read_text_documents
from tests.conftest import SAMPLE_DROPS, land_drop, materialize_drop, metadata_of

pytestmark = pytest.mark.slow  # the sample drops through every text stage

PLANTED = SAMPLE_DROPS.parent / "reference" / "planted.json"
DROPS = ("sample-a", "sample-b")
RULES_PRESET = "whitespace"


def outcome_by_url(storage: Storage, drop: str) -> dict[str, str]:
    """URL → "kept" or the drop/reject reason, for every HTML response of extracted_text[drop]."""
    crawl = read_stage_table(storage, "raw_crawl", drop, columns=["record_id", "target_uri"])
    url = dict(zip(crawl["record_id"].to_pylist(), crawl["target_uri"].to_pylist(), strict=True))
    out = {r["url"]: "kept" for r in read_stage_table(storage, "extracted_text", drop).to_pylist()}
    for r in read_stage_table(storage, "extracted_text", drop, REJECTS).to_pylist():
        out.setdefault(url[r["record_id"]], r["reason"])
    return out


@pytest.fixture
def sample_run(settings: Settings, instance: dg.DagsterInstance) -> dict[str, dg.ExecuteInProcessResult]:
    from data_assets.definitions import build_defs

    for drop in DROPS:
        land_drop(settings, drop, src=SAMPLE_DROPS / drop)
        materialize_drop(settings, instance, drop, assets=("raw_crawl",))
    job = build_defs(settings).resolve_implicit_global_asset_job_def()
    classifier = job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("quality_classifier")])
    meta = metadata_of(classifier, "quality_classifier")
    # the default positives: the reference texts installed with the package, whatever the crawl holds
    assert meta["n_positive"] == len(read_text_documents(default_reference_texts())) == 63
    assert meta["calibration_held_out"] is True
    stages = ("filtered_text", "extracted_text")
    config = {"ops": {"filtered_text": {"config": {"rules_preset": RULES_PRESET}}}}
    return {drop: materialize_drop(settings, instance, drop, stages, run_config=config) for drop in DROPS}


def test_sample_drops_planted_cases(settings: Settings, sample_run: dict[str, dg.ExecuteInProcessResult]) -> None:
    storage = Storage(settings.lake)
    planted = json.loads(PLANTED.read_text())["cases"]
    outcome = {drop: outcome_by_url(storage, drop) for drop in DROPS}

    for case in planted:
        drop, url = case["drop"], case["url"]
        if case["kind"] in ("near_duplicate", "exact_duplicate", "cross_drop_duplicate"):
            original = outcome[case.get("duplicate_of_drop", drop)][case["duplicate_of"]]
            if original == "kept":  # both copies passed the filters: the later one must be the duplicate
                assert outcome[drop][url] == f"{case['match']}_duplicate", case
            else:  # the original was filtered out; its copy must not survive either
                assert outcome[drop][url] != "kept", case
        elif case["kind"] == "noai":
            assert outcome[drop][url] == "opt_out"
        elif case["kind"] == "low_quality":
            assert outcome[drop][url] not in ("kept", "http_status"), case

    # the planted collapses that the sample exercises, named explicitly
    assert outcome["sample-a"]["http://docs.example.org/3/library/hmac.html"] == "exact_duplicate"
    assert outcome["sample-a"]["http://www.example.com/wiki/DebianReference/Authentication.html"] == "near_duplicate"
    assert outcome["sample-b"]["http://mirror.example.com/python/3.11/library/pwd.html"] == "exact_duplicate"
    assert outcome["sample-b"]["http://handbook.example.org/vorwort.html"] == "exact_duplicate"
    assert outcome["sample-b"]["http://news.example.com/fiction/moby-dick.html"] == "near_duplicate"
    assert outcome["sample-b"]["http://news.example.com/politics/manchin.html"] == "kept"  # boilerplate-heavy article

    pii_case = next(c for c in planted if c["kind"] == "pii")
    rows = read_stage_table(storage, "extracted_text", "sample-a").to_pylist()
    page = next(r for r in rows if r["url"] == pii_case["url"])
    assert all(value not in page["text"] for value in pii_case["values"].values())
    assert all(value in page["text"] for value in pii_case["near_misses"].values())
    assert page["pii_counts"] == {
        "email": 1, "phone": 1, "ipv4": 1, "ipv6": 1, "payment_card": 1, "iban": 1, "us_ssn": 1
    }  # fmt: skip

    tables = [read_stage_table(storage, "extracted_text", drop, columns=["language"]) for drop in DROPS]
    languages = {lang for t in tables for lang in t["language"].to_pylist()}
    # every Debian Reference translation is identified (unit tests check each page); the English-trained quality
    # classifier's bottom-decile cut removes some non-English pages, so only most languages survive to the output
    assert "en" in languages and len(languages) >= 5 and languages <= {"en", "de", "fr", "es", "it", "pt", "ja", "zh"}

    for drop, result in sample_run.items():
        assert result.success
        failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
        assert failed == [], (drop, failed)
        meta = metadata_of(result, "extracted_text")
        assert meta["total"] == meta["kept"] + meta["dropped"] + meta["rejected"]
        assert metadata_of(result, "filtered_text")["rules_preset"] == RULES_PRESET
    meta_b = metadata_of(sample_run["sample-b"], "extracted_text")
    assert meta_b["dedup"]["cross_partition"] == 3 and set(meta_b["dedup_sources"]) == set(DROPS)

    # the noai page also says noimageai; it is dropped, so no kept row of the sample carries the flag
    flags = read_stage_table(storage, "filtered_text", "sample-a", columns=["noimageai"])
    assert flags.num_rows > 20 and not any(flags["noimageai"].to_pylist())
    detail = [r["detail"] for r in read_stage_table(storage, "filtered_text", "sample-a", REJECTS)
              .to_pylist() if r["reason"] == "opt_out"]  # fmt: skip
    assert detail == ["robots directives: noai, noimageai"]
    assert Path(BandIndex(storage, "filtered_text").uri("sample-a")).is_file()
