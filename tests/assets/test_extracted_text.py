"""filtered_text → extracted_text on two drops: reasons, checks, and cross-drop dedup in either order."""

import shutil
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import dagster as dg
import pytest

from mmrecipe.settings import Settings
from mmrecipe.stage_output import REJECTS, committed_parts, read_stage_table
from mmrecipe.storage import Storage
from sensors.stale_drops import text_dedup_refresh
from tests.conftest import land_drop, materialize_drop, metadata_of, run_sensor_requests
from tests.warc_fixtures import HttpResponse, warc_bytes

pytestmark = pytest.mark.slow  # two drops through every text stage, and classifier training

DROP_A, DROP_B = "2026-01-a", "2026-02-b"
A_DOCS = ["exceptions", "execmodel", "customization", "naming", "import", "assignment"]
B_NEW = ["function", "class", "identifiers"]


def html(text: str, head: str = "") -> bytes:
    paragraphs = "".join(f"<p>{p}</p>" for p in text.split("\n\n") if p.strip())
    return f"<html><head><title>Python</title>{head}</head><body><main>{paragraphs}</main></body></html>".encode()


def near_copy(text: str) -> str:
    """A mirror's copy: another title line, the last paragraph dropped."""
    return "Mirrored from the Python Language Reference\n\n" + text[: text.rstrip().rfind("\n\n")]


def drop_a() -> list[HttpResponse]:
    pages = [HttpResponse(f"http://docs.example.org/ref/{n}.html", html(topics[n])) for n in A_DOCS]
    contact = "\n\nWrite to jane.doe@example.org or call +1 415-555-0132 (SSN on file: 078-05-1120)."
    pages += [
        HttpResponse("http://docs.example.org/ref/contact.html", html(topics["binary"] + contact)),
        HttpResponse(
            "http://docs.example.org/ref/optout.html", html(topics["global"]), headers={"X-Robots-Tag": "noai"}
        ),
        HttpResponse("http://docs.example.org/ref/gone.html", html(topics["if"]), status=404),
    ]
    return pages


def drop_b() -> list[HttpResponse]:
    return [
        HttpResponse("http://mirror.example.com/exceptions.html", html(topics["exceptions"])),  # exact copy of A
        HttpResponse("http://mirror.example.com/execmodel.html", html(near_copy(topics["execmodel"]))),  # near copy
        *[HttpResponse(f"http://mirror.example.com/{n}.html", html(topics[n])) for n in B_NEW],
        HttpResponse("http://mirror.example.com/function-again.html", html(topics["function"])),  # copy within B
    ]


def materialize_classifier(settings: Settings, instance: dg.DagsterInstance, reference: Path, **config: Any) -> Any:
    from data_assets.definitions import build_defs

    job = build_defs(settings).resolve_implicit_global_asset_job_def()
    run_config = {"ops": {"quality_classifier": {"config": {"positive_texts_file": str(reference), **config}}}}
    return job.execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("quality_classifier")], run_config=run_config,
        raise_on_error=False,
    )  # fmt: skip


def text(settings: Settings, instance: dg.DagsterInstance, drop: str) -> dg.ExecuteInProcessResult:
    """filtered_text and extracted_text of one drop, keeping every document the classifier scores (percentile 0).

    The whitespace rules: datatrove's (the default for English) drop these Python documentation pages for their
    code (tests/unit/test_text_pipeline.py), and this test is about the assets, not the rules."""
    from data_assets.definitions import build_defs

    job = build_defs(settings).resolve_job_def("drop_stages_job")
    return job.execute_in_process(
        instance=instance,
        partition_key=drop,
        asset_selection=[dg.AssetKey("filtered_text"), dg.AssetKey("extracted_text")],
        run_config={
            "ops": {"filtered_text": {"config": {"quality_drop_below_percentile": 0.0, "rules_preset": "whitespace"}}}
        },
    )


def reasons(storage: Storage, drop: str) -> dict[str, str]:
    """URL → reason of every dropped or rejected record of extracted_text[drop]."""
    crawl = read_stage_table(storage, "raw_crawl", drop, columns=["record_id", "target_uri"])
    url = dict(zip(crawl["record_id"].to_pylist(), crawl["target_uri"].to_pylist(), strict=True))
    rejects = read_stage_table(storage, "extracted_text", drop, REJECTS).to_pylist()
    return {url[r["record_id"]].rsplit("/", 1)[1]: r["reason"] for r in rejects}


def kept_urls(storage: Storage, drop: str) -> list[str]:
    table = read_stage_table(storage, "extracted_text", drop, columns=["url"])
    return [u.rsplit("/", 1)[1] for u in table["url"].to_pylist()]


@pytest.fixture
def two_drops(settings: Settings, instance: dg.DagsterInstance, tmp_path: Path) -> Storage:
    """Both drops landed and indexed, and a quality classifier trained on reference prose."""
    land_drop(settings, DROP_A, {"crawl.warc.gz": warc_bytes(drop_a())})
    land_drop(settings, DROP_B, {"crawl.warc.gz": warc_bytes(drop_b())})
    for drop in (DROP_A, DROP_B):
        materialize_drop(settings, instance, drop, assets=("raw_crawl",))
    reference = tmp_path / "reference.txt"
    reference.write_text("\n\n\n".join(" ".join(topics[n].split()) for n in ("calls", "function", "class", "lambda")))
    result = materialize_classifier(settings, instance, reference, positive_urls_file="", dim=16, bucket=20000)
    assert result.success
    meta = metadata_of(result, "quality_classifier")
    assert meta["n_positive"] == 4 and meta["n_negative"] >= 1 and len(meta["version"]) == 16
    return Storage(settings.lake)


def assert_drop_a_reasons_checks_and_metadata(result: dg.ExecuteInProcessResult, two_drops: Storage) -> None:
    assert result.success
    assert reasons(two_drops, DROP_A) == {"optout.html": "opt_out", "gone.html": "http_status"}
    assert kept_urls(two_drops, DROP_A) == [f"{n}.html" for n in A_DOCS] + ["contact.html"]
    meta = metadata_of(result, "extracted_text")
    assert meta["total"] == 9 and meta["kept"] == 7 and meta["dropped_opt_out"] == 1
    assert meta["dropped_http_status"] == 1 and meta["dagster/row_count"] == 7
    assert "| en | 7 |" in meta["languages"] and "score" in meta["quality_histogram"]
    assert meta["stale_later_drops"] == "none"
    filtered = metadata_of(result, "filtered_text")
    assert filtered["rules_preset"] == "whitespace"
    assert filtered["quality_threshold_percentile"] == 0.0 and "data:image/png;base64," in filtered["quality_chart"]
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        ("filtered_text", "conservation"): True,
        ("extracted_text", "conservation"): True,
        ("extracted_text", "no_pii_left"): True,
        ("extracted_text", "language_id_coverage"): True,
        ("extracted_text", "keep_rate"): True,
    }
    contact = read_stage_table(two_drops, "extracted_text", DROP_A).to_pylist()[-1]
    assert "jane.doe@example.org" not in contact["text"] and "<US_SSN>" in contact["text"]
    assert contact["pii_counts"]["email"] == 1 and contact["pii_counts"]["phone"] == 1
    assert contact["dedup_cluster"] == contact["record_id"]


def snapshot(storage: Storage) -> dict[str, bytes]:
    return {
        uri: storage.read_bytes(uri)
        for asset in ("filtered_text", "extracted_text")
        for drop in (DROP_A, DROP_B)
        for tree in ("data", REJECTS)
        for uri in committed_parts(storage, asset, drop, tree)
    }


def refresh_stale(settings: Settings, instance: dg.DagsterInstance) -> list[str]:
    """Run what the text_dedup_refresh sensor requests (extracted_text and its checks); the refreshed drops."""
    return list(run_sensor_requests(settings, instance, text_dedup_refresh))


def test_two_drops_reasons_checks_and_order_independent_dedup(
    settings: Settings, instance: dg.DagsterInstance, two_drops: Storage
) -> None:
    assert_drop_a_reasons_checks_and_metadata(text(settings, instance, DROP_A), two_drops)
    text(settings, instance, DROP_B)
    assert reasons(two_drops, DROP_B) == {
        "exceptions.html": "exact_duplicate",
        "execmodel.html": "near_duplicate",
        "function-again.html": "exact_duplicate",
    }
    assert kept_urls(two_drops, DROP_B) == [f"{n}.html" for n in B_NEW]
    assert refresh_stale(settings, instance) == []
    in_order = snapshot(two_drops)

    assert text(settings, instance, DROP_B).success  # re-running B changes nothing
    assert snapshot(two_drops) == in_order and refresh_stale(settings, instance) == []

    for asset in ("filtered_text", "extracted_text"):
        shutil.rmtree(Path(settings.lake) / asset)
    text(settings, instance, DROP_B)  # B first: with nothing earlier, its copies survive
    assert kept_urls(two_drops, DROP_B) == ["exceptions.html", "execmodel.html", *[f"{n}.html" for n in B_NEW]]
    result = text(settings, instance, DROP_A)
    assert metadata_of(result, "extracted_text")["stale_later_drops"] == DROP_B
    assert refresh_stale(settings, instance) == [DROP_B]
    assert snapshot(two_drops) == in_order  # byte for byte what A-then-B produced
    assert refresh_stale(settings, instance) == []


def test_classifier_is_trained_when_missing_and_fails_clearly_without_positives(
    settings: Settings, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    from data_assets.definitions import build_defs

    key, selection = dg.AssetKey("quality_classifier"), dg.AssetSelection.assets("quality_classifier")
    defs = build_defs(settings)
    before = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    assert before.get_num_requested(key) == 0  # no drop indexed yet: nothing to train on
    land_drop(settings, DROP_A, {"crawl.warc.gz": warc_bytes(drop_a())})
    materialize_drop(settings, instance, DROP_A, assets=("raw_crawl",))
    after = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=before.cursor
    )
    assert after.get_num_requested(key) == 1  # the automation sensor trains it once a drop is indexed

    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    result = materialize_classifier(
        settings, instance, empty, positive_urls_file="", positive_urls=["http://nowhere.example/"]
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error.to_string()
    assert f"no positive training documents: the reference text file '{empty}' holds none" in error
    assert "none of the 1 reference URLs is an HTTP-200 HTML page" in error
    assert not [e for e in result.all_events if e.is_step_up_for_retry]  # a configuration error is not retried
