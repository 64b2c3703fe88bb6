"""A drop whose blocking check failed stays out of every mixture and release, until it is fixed and re-checked."""

import io
import json
import tarfile
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from mmrecipe.mixture.release import EVIDENCE_FILE, MARKER, latest_release
from mmrecipe.settings import Settings
from mmrecipe.storage import Storage
from tests.assets.test_recipe_stages import recipe_env, run_recipe, text_checks  # noqa: F401 - the fixture
from tests.conftest import metadata_of
from tests.unit.test_mixture_helpers import build_drop, topic_texts

pytestmark = pytest.mark.slow  # mixture and release runs over several drops, per test

PII = "Write to jane.doe@example.com or call +1 415 555 0134 for the full records."


def d2_pages(planted: bool) -> list[tuple[str, str]]:
    """d2's pages (as `recipe_env` built them), with PII planted in an English page that the mixture keeps."""
    pages = topic_texts(12, 12)
    if planted:
        name, text = pages[8]
        pages[8] = (name, f"{text}\n\n{PII}")
    return pages


def reland_d2(settings: Settings, instance: dg.DagsterInstance, planted: bool) -> list[str]:
    """d2 re-landed and its text stage re-materialized (its checks not yet re-run); returns its text record ids."""
    ids = build_drop(Storage(settings.lake), Storage(settings.landing), "d2", d2_pages(planted))
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="extracted_text", partition="d2"))
    return ids["extracted_text"]


def no_pii_left(settings: Settings, instance: dg.DagsterInstance, drop: str) -> tuple[bool, str]:
    """Whether extracted_text's checks found PII in the drop (conservation must pass), and their run."""
    checks, run_id = text_checks(settings, instance, drop)
    assert checks["conservation"] is True
    return checks["no_pii_left"], run_id


def released_files(settings: Settings, recipe: str) -> Path:
    version = latest_release(Storage(settings.lake), recipe)
    assert version is not None
    return Path(settings.lake, "releases", recipe, version)


def drops_in_release(folder: Path) -> set[str]:
    """Every drop named by the release's manifest, token index and WebDataset samples."""
    manifest = pq.read_table(folder / "manifest.parquet")
    doc_ids = set(manifest["doc_id"].to_pylist())
    token_docs = set(pq.read_table(folder / "tokens" / "index.parquet")["doc_id"].to_pylist())
    assert token_docs == doc_ids  # every token span belongs to a manifest document
    drops = set(manifest["drop"].to_pylist())
    for tar in (folder / "webdataset").glob("*.tar"):
        with tarfile.open(fileobj=io.BytesIO(tar.read_bytes())) as t:
            for m in (m for m in t.getmembers() if m.name.endswith(".json")):
                drops.add(json.loads(t.extractfile(m).read())["drop"])  # type: ignore[union-attr]
    return drops


def test_failed_pii_check_quarantines_the_drop_until_fixed(recipe_env: Settings, instance: dg.DagsterInstance) -> None:  # noqa: F811
    d2_ids = reland_d2(recipe_env, instance, planted=True)
    passed, bad_run = no_pii_left(recipe_env, instance, "d2")
    assert passed is False  # the real check finds the planted address and phone number

    built = run_recipe(recipe_env, instance, "default", ("mixture", "release"))
    assert built.success
    mix = metadata_of(built, "mixture")
    assert mix["drops"] == "d1"
    assert f"| d2 | extracted_text:no_pii_left | failed | failed in run {bad_run} |" in mix["quarantined_drops"]
    assert f"| d2 | extracted_text:no_pii_left | failed | failed in run {bad_run} |" in mix["data_card"]
    assert "extracted_text:no_pii_left" in mix["gate_checks"] and "raw_crawl:conservation" in mix["gate_checks"]
    folder = released_files(recipe_env, "default")
    assert drops_in_release(folder) == {"d1"}
    manifest = pq.read_table(folder / "manifest.parquet")
    assert not set(manifest["record_id"].to_pylist()) & set(d2_ids)
    assert {i["drop"] for i in json.loads((folder / "mixture.json").read_text())["inputs"]} == {"d1"}
    for path in (p for p in folder.rglob("*") if p.suffix in (".json", ".tar", ".txt", ".md", ".yaml")):
        assert b"d2.example.org" not in path.read_bytes() and b"jane.doe" not in path.read_bytes(), path
    evidence = json.loads((folder / EVIDENCE_FILE).read_text())
    assert {e["partition"] for e in evidence} == {"d1", "default"} and all(e["admits"] for e in evidence)
    assert {e["check_key"] for e in evidence} >= {"extracted_text:no_pii_left", "mixture:decontaminated"}
    marker = json.loads((folder / MARKER).read_text())
    assert marker["files"][EVIDENCE_FILE] and "extracted_text:no_pii_left" in marker["checks_passed"]
    assert "extracted_text:no_pii_left" in metadata_of(built, "release")["check_evidence"]

    # fixed: d2 re-landed clean and re-materialized; until its check runs again, the old failure is stale
    reland_d2(recipe_env, instance, planted=False)
    stale = run_recipe(recipe_env, instance, "default", ("mixture",))
    assert metadata_of(stale, "mixture")["drops"] == "d1"
    assert (
        f"| d2 | extracted_text:no_pii_left | stale | stale: evaluated on run {bad_run} (materialization of run"
        in metadata_of(stale, "mixture")["quarantined_drops"]
    )
    passed, _ = no_pii_left(recipe_env, instance, "d2")
    assert passed is True
    fixed = run_recipe(recipe_env, instance, "default", ("mixture", "release"))
    assert fixed.success
    assert metadata_of(fixed, "mixture")["drops"] == "d1, d2"
    assert metadata_of(fixed, "mixture")["quarantined_drops"] == "none"
    assert drops_in_release(released_files(recipe_env, "default")) == {"d1", "d2"}


def test_release_refuses_a_mixture_whose_drop_no_longer_passes(
    recipe_env: Settings,  # noqa: F811
    instance: dg.DagsterInstance,
) -> None:
    built = run_recipe(recipe_env, instance, "default", ("mixture",))
    assert metadata_of(built, "mixture")["drops"] == "d1, d2"
    reland_d2(recipe_env, instance, planted=True)  # after the mixture was built, d2 changes and fails its check
    _, bad_run = no_pii_left(recipe_env, instance, "d2")

    refused = run_recipe(recipe_env, instance, "default", ("release",))
    assert not refused.success and not Path(recipe_env.lake, "releases").exists()
    failure = next(e for e in refused.all_events if e.is_step_failure).step_failure_data.user_failure_data
    assert f"d2: extracted_text:no_pii_left failed in run {bad_run}" in failure.description
    assert not [e for e in refused.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_mixture_fails_clearly_when_every_drop_is_quarantined(
    recipe_env: Settings,  # noqa: F811
    instance: dg.DagsterInstance,
) -> None:
    for drop in ("d1", "d2"):  # a new materialization that no check has looked at yet
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="raw_crawl", partition=drop))
    result = run_recipe(recipe_env, instance, "default", ("mixture",))
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.user_failure_data
    assert "mixture[default]: every drop is quarantined (d1: raw_crawl:conservation stale:" in failure.description
    assert "d2: raw_crawl:conservation stale:" in failure.description
    assert not Path(recipe_env.lake, "mixture", "default", "mixture.json").exists()
