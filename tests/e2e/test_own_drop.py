"""A team's first own drop on a fresh MMRECIPE_HOME: `mmrecipe ingest` runs every drop stage with the defaults.

The drop holds real pages that are in neither the sample nor the classifier's reference texts
(tests/real_pages.py), so nothing the defaults read depends on what was crawled.
"""

from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from data_assets.cli import main
from mmrecipe.settings import Settings
from mmrecipe.stage_output import is_committed, read_stage_table
from mmrecipe.storage import Storage
from mmrecipe.text.classifier_data import default_reference_texts, read_text_documents
from mmrecipe.text.quality_classifier import load_scorer
from resources.settings import environment_settings
from tests.assets.test_extracted_text_sample import outcome_by_url
from tests.conftest import metadata_of
from tests.real_pages import own_drop_responses, page_url, write_own_drop
from tests.warc_fixtures import HttpResponse, warc_bytes

pytestmark = pytest.mark.slow
DROP = "team-crawl-2026-12"
# README pages whose prose passes every rule-based filter
PROSE = [page_url(d) for d in ("trafilatura", "datasketch", "faster-whisper", "boto3", "Resiliparse", "av")]


def _ingest(monkeypatch: pytest.MonkeyPatch, settings: Settings, *args: str) -> str:
    monkeypatch.setenv("DAGSTER_HOME", settings.dagster_home)  # the CLI's instance; restored afterwards
    result = CliRunner().invoke(main, ["ingest", *args])
    assert result.exit_code == 0, result.output
    assert "step FAILED" not in result.output and "check FAILED [ERROR]" not in result.output, result.output
    return result.output


def _latest(instance: dg.DagsterInstance, asset: str, partition: str | None) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(dg.AssetKey(asset), asset_partitions=[partition] if partition else None), limit=1
    ).records
    assert records, f"{asset}[{partition}] was not materialized"
    return {k: getattr(v, "value", v) for k, v in records[0].asset_materialization.metadata.items()}


def test_a_fresh_home_ingests_its_first_own_drop_with_the_defaults(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from data_assets.definitions import build_defs

    folder = write_own_drop(tmp_path / "incoming" / DROP)
    out = _ingest(monkeypatch, settings, str(folder))
    assert f"ingest {DROP}: raw_crawl: ok" in out and "train quality_classifier: ok" in out
    assert f"ingest {DROP}: ok" in out

    lake = Storage(settings.lake)
    scorer = load_scorer(lake)  # trained on the installed reference texts against this crawl
    assert scorer.info.positive_source == default_reference_texts()
    assert scorer.info.n_positive == len(read_text_documents(default_reference_texts())) == 63
    assert scorer.info.n_negative >= 1 and scorer.info.drops == [DROP]

    instance = dg.DagsterInstance.get()
    stages = build_defs(settings).resolve_job_def("drop_stages_job").asset_layer.executable_asset_keys
    for key in stages:  # every drop stage materialized, with conserved counts
        meta = _latest(instance, key.to_user_string(), DROP)
        assert meta["path"] == lake.uri(key.to_user_string(), "data", DROP), key
        assert is_committed(lake, key.to_user_string(), DROP), key
        if "rejected" in meta:
            assert meta["total"] == meta["kept"] + meta["dropped"] + meta["rejected"], key

    text = read_stage_table(lake, "extracted_text", DROP)
    assert text.num_rows == _latest(instance, "extracted_text", DROP)["kept"] > 0
    outcome = outcome_by_url(lake, DROP)
    assert outcome[page_url("trafilatura")] == "kept"
    assert outcome[page_url("pandas")] == "gopher_short_doc"  # its README keeps only 47 words of prose
    assert outcome[page_url("ImageHash")] == "fineweb_char_dup"  # two of its paragraphs are the same line
    assert outcome[page_url("soundfile")] == "gopher_alpha_words"  # a changelog of dates and version numbers
    # the other pages pass every rule; the classifier keeps or scores them out, nothing else drops them
    assert {outcome[u] for u in PROSE} <= {"kept", "low_quality_score"}, {u: outcome[u] for u in PROSE}
    assert set(text["language"].to_pylist()) == {"en"}
    images = _latest(instance, "deduped_images", DROP)
    assert images["total"] == 1  # the page's one photo was read, whatever the image filters decided

    # a team's own reference set, from the CLI: the next ingest retrains the classifier on it
    reference = tmp_path / "our-reference.txt"
    docs = read_text_documents(default_reference_texts())[:5]
    reference.write_text("\n\n".join(" ".join(d.split()) for d in docs) + "\n")
    second = write_own_drop_subset(tmp_path / "incoming" / "team-crawl-2026-12b")
    out = _ingest(monkeypatch, settings, str(second), "--reference-texts", str(reference))
    assert "train quality_classifier: ok" in out and "ingest team-crawl-2026-12b: ok" in out
    retrained = load_scorer(lake)
    assert retrained.info.positive_source == str(reference) and retrained.info.n_positive == 5
    assert retrained.version != scorer.version
    assert sorted(retrained.info.drops) == sorted([DROP, "team-crawl-2026-12b"])

    # a deployment's reference set, from the environment (what automation-started trainings use)
    env_reference = tmp_path / "deployment-reference.txt"
    env_reference.write_text("\n\n".join(" ".join(d.split()) for d in docs[:3]) + "\n")
    monkeypatch.setenv("MMRECIPE_REFERENCE_TEXTS", str(env_reference))
    job = build_defs(environment_settings()).resolve_implicit_global_asset_job_def()
    trained = job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("quality_classifier")])
    assert metadata_of(trained, "quality_classifier")["positive_source"] == str(env_reference)
    assert load_scorer(lake).info.n_positive == 3


def write_own_drop_subset(folder: Path) -> Path:
    """A second, two-page drop of the same kind."""
    folder.mkdir(parents=True)
    pages: list[HttpResponse] = own_drop_responses()[1:3]
    (folder / "crawl-00000.warc.gz").write_bytes(warc_bytes(pages))
    return folder
