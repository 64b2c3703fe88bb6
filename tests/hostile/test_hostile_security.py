"""Security basics: hostile drop names, manifest paths and partition keys never escape the landing or lake
roots; secrets never reach logs, metadata or outputs; limits are configurable with safe defaults."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from data_assets.cli import main as cli
from mmrecipe.drops import manifest_for_folder
from mmrecipe.settings import Settings
from mmrecipe.stage_output import committed_parts, part_name
from mmrecipe.storage import Storage
from sensors.source_drops import DropCursor, ScanLimits, scan_drops
from tests.conftest import land_drop
from tests.hostile.harness import (
    SECRET_ENV,
    STAGE_KIND,
    CorpusDir,
    HostileRun,
    case_outcome,
    home_settings,
    materialize,
    record_ids_by_span,
    stage_outcomes,
)
from tests.hostile.make_hostile_corpus import DROP

pytestmark = pytest.mark.slow  # every drop stage on the hostile corpus, in child processes

HOSTILE_NAMES = ["../x", "a/../../x", "..", "with space", "dröp", "ünïcödé-drop", "x" * 129, "-flag", ".hidden"]


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def crawl_folder(tmp_path: Path, hostile_corpus: CorpusDir) -> Path:
    folder = tmp_path / "incoming" / "crawl"
    folder.mkdir(parents=True)
    shutil.copy(hostile_corpus.drop_dir(DROP) / "02-framing.warc.gz", folder / "part-0.warc.gz")
    return folder


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_cli_refuses_hostile_drop_names_and_writes_nothing(
    name: str, tmp_path: Path, crawl_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMRECIPE_HOME", str(tmp_path / "home"))
    before = _tree(tmp_path)
    result = CliRunner().invoke(cli, ["ingest", str(crawl_folder), "--drop", name])
    assert result.exit_code != 0
    assert f"invalid drop name {name!r}" in result.output and "Rename the folder" in result.output
    assert _tree(tmp_path) == before  # nothing landed, registered or written anywhere


@pytest.mark.parametrize("folder_name", ["with space", "dröp", "ünïcödé"])
def test_cli_refuses_a_folder_whose_name_is_not_a_safe_drop_name(
    folder_name: str, tmp_path: Path, crawl_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMRECIPE_HOME", str(tmp_path / "home"))
    folder = crawl_folder.rename(crawl_folder.parent / folder_name)
    before = _tree(tmp_path)
    result = CliRunner().invoke(cli, ["ingest", str(folder)])
    assert result.exit_code != 0 and "invalid drop name" in result.output
    assert _tree(tmp_path) == before


def test_manifest_paths_cannot_pull_files_from_outside_the_drop(
    tmp_path: Path, crawl_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "incoming" / "outside.warc.gz").write_bytes((crawl_folder / "part-0.warc.gz").read_bytes())
    entries = [{"path": "../outside.warc.gz", "size": 1, "sha256": "0" * 64}]
    (crawl_folder / "_MANIFEST.json").write_text(json.dumps({"drop": "crawl", "files": entries}))
    monkeypatch.setenv("MMRECIPE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["ingest", str(crawl_folder)])
    assert result.exit_code != 0 and "escapes the drop folder" in result.output
    assert not (tmp_path / "home" / "landing").exists() or not any((tmp_path / "home" / "landing").rglob("*"))


def test_a_landed_manifest_with_dotdot_paths_is_refused_by_raw_crawl(tmp_path: Path, hostile_corpus: CorpusDir) -> None:
    settings = home_settings(tmp_path / "home")
    land_drop(
        settings, "other", {"secret.warc.gz": (hostile_corpus.drop_dir(DROP) / "02-framing.warc.gz").read_bytes()}
    )
    folder = land_drop(
        settings, "victim", {"a.warc.gz": (hostile_corpus.drop_dir(DROP) / "03-plain.warc").read_bytes()}
    )
    manifest = json.loads((folder / "_MANIFEST.json").read_text())
    other = manifest_for_folder(str(Path(settings.landing) / "other"), "other").files[0]
    manifest["files"].append({"path": "../other/secret.warc.gz", "size": other.size, "sha256": other.sha256})
    (folder / "_MANIFEST.json").write_text(json.dumps(manifest))
    with dg.instance_for_test(temp_dir=settings.dagster_home) as instance:
        result = materialize(settings, instance, "victim", ["raw_crawl"])
    assert not result.success
    errors = [
        str(e.step_failure_data.error.cause or e.step_failure_data.error) for e in result.get_step_failure_events()
    ]
    assert any("escapes the drop folder" in e for e in errors), errors
    assert _tree(Path(settings.lake)) == {}


def test_missing_file_drop_is_refused_before_anything_is_written(tmp_path: Path, hostile_corpus: CorpusDir) -> None:
    settings = home_settings(tmp_path / "home")
    shutil.copytree(hostile_corpus.drop_dir("missing-file"), Path(settings.landing) / "missing-file")
    with dg.instance_for_test(temp_dir=settings.dagster_home) as instance:
        result = materialize(settings, instance, "missing-file", ["raw_crawl"])
    assert not result.success
    errors = [
        str(e.step_failure_data.error.cause or e.step_failure_data.error) for e in result.get_step_failure_events()
    ]
    assert any("manifest lists b.warc.gz but it is missing" in e for e in errors), errors
    assert _tree(Path(settings.lake)) == {}


def test_source_drops_sensor_starts_only_safe_complete_drops(tmp_path: Path, hostile_corpus: CorpusDir) -> None:
    settings = home_settings(tmp_path / "home")
    warc = (hostile_corpus.drop_dir(DROP) / "02-framing.warc.gz").read_bytes()
    for name in ("ok-drop", "with space", "dröp", "ünïcödé"):
        land_drop(settings, name, {"a.warc.gz": warc})
    shutil.copytree(hostile_corpus.drop_dir("missing-file"), Path(settings.landing) / "missing-file")
    logged: list[str] = []
    started = scan_drops(Storage(settings.landing), DropCursor(), set(), ScanLimits(), logged.append)
    assert [name for name, _ in started] == ["ok-drop"]
    assert len(logged) == 4 and all("not started yet" in line for line in logged), logged
    assert any("b.warc.gz but it is missing" in line for line in logged)


@pytest.mark.parametrize("stage", list(STAGE_KIND))
def test_hostile_partition_keys_never_write_outside_the_lake(
    stage: str, hostile_run: HostileRun, hostile_instance: dg.DagsterInstance
) -> None:
    """A partition key like `../../escape` (addable from the UI or API) must not make a stage read or write
    outside `<lake>/<stage>/`. A raw_crawl index is planted where the escaped path resolves to."""
    planted = hostile_run.lake / "escape"  # where <lake>/raw_crawl/data/../../escape resolves to
    planted.mkdir(exist_ok=True)
    shutil.copy(committed_parts(Storage(str(hostile_run.lake)), "raw_crawl", DROP)[0], planted / part_name(0))
    watched = [Path(hostile_run.settings.lake), Path(hostile_run.settings.landing), planted]
    before = {str(root): _tree(root) for root in watched}
    try:
        result = materialize(hostile_run.settings, hostile_instance, "../../escape", [stage], checks=False)
        after = {str(root): _tree(root) for root in watched}
    finally:
        shutil.rmtree(planted)
        hostile_instance.delete_dynamic_partition("drops", "../../escape")
    assert after == before, f"{stage} wrote outside the lake: {_changed(before, after)}"
    assert not result.success, f"{stage} accepted the partition key '../../escape'"
    errors = [str(e.step_failure_data.error) for e in result.get_step_failure_events()]
    assert len(errors) == 1 and "invalid drop name '../../escape'" in errors[0], errors
    retried = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert not retried, f"{stage} retried a partition key that can never be safe"


def _changed(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    return [f"{root}/{k}" for root in after for k in after[root] if before[root].get(k) != after[root][k]]


def test_secrets_never_reach_logs_metadata_or_outputs(hostile_run: HostileRun) -> None:
    assert set(SECRET_ENV) <= set(hostile_run.run.summary["secret_env_names"])  # the run really had them
    secret = hostile_run.secret.encode()
    home = Path(hostile_run.settings.home)
    canary = home / "canary.txt"
    canary.write_bytes(b"planted: " + secret)  # the scan must be able to fail
    try:
        hits = [str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and secret in p.read_bytes()]
    finally:
        canary.unlink()
    assert hits == ["canary.txt"], f"secret found in {hits}"  # event log (SQLite), compute logs, lake, runs
    assert hostile_run.secret not in hostile_run.run.stdout + hostile_run.run.stderr
    metadata = json.dumps(hostile_run.run.summary)
    assert hostile_run.secret not in metadata


LIMITS = {  # stage -> (config field pattern, the default must be at most this)
    "raw_crawl": (r"max_record_bytes", 1 << 30),  # decompressed size of one WARC record
    "deduped_images": (r"max_decode_pixels", 200_000_000),  # decompression-bomb pixels
    "transcribed_audio": (r"max_duration_s", 4 * 3600),
    "filtered_text": (r"max_\w*(bytes|chars)", 64 << 20),  # size of one HTML page / document
}


def _config_defaults(settings: Settings, stage: str) -> dict[str, object]:
    from data_assets.definitions import build_defs

    schema = build_defs(settings).resolve_assets_def(dg.AssetKey(stage)).op.config_schema
    fields = schema.as_field().config_type.fields if schema else {}
    return {k: f.default_value for k, f in fields.items() if f.default_provided}


@pytest.mark.parametrize(
    "stage",
    [
        "raw_crawl",
        "deduped_images",
        "transcribed_audio",
        "filtered_text",
    ],
)
def test_limits_are_configurable_with_safe_defaults(stage: str, tmp_path: Path) -> None:
    settings = home_settings(tmp_path / "home")
    pattern, safe = LIMITS[stage]
    defaults = _config_defaults(settings, stage)
    found = {k: v for k, v in defaults.items() if re.fullmatch(pattern, k)}
    assert found, f"{stage} has no configurable limit matching {pattern}: {sorted(defaults)}"
    assert all(0 < v <= safe for v in found.values()), found


@pytest.mark.parametrize(
    ("stage", "run_config", "case_id", "reason"),
    [
        ("raw_crawl", {"max_record_bytes": 30_000}, "control_image", "record_too_large"),
        ("deduped_images", {"max_decode_pixels": 100_000}, "control_image", "decompression_bomb"),
        ("transcribed_audio", {"max_duration_s": 1.0}, "control_audio", "too_long"),
    ],
)
def test_lowering_a_limit_rejects_with_its_reason(
    stage: str, run_config: dict, case_id: str, reason: str, tmp_path: Path, hostile_corpus: CorpusDir
) -> None:
    settings = home_settings(tmp_path / "home")
    name = "00-controls.warc.gz"
    land_drop(settings, "limits", {name: (hostile_corpus.drop_dir(DROP) / name).read_bytes()})
    config = {"ops": {stage: {"config": run_config}}}
    with dg.instance_for_test(temp_dir=settings.dagster_home) as instance:
        if stage != "raw_crawl":
            assert materialize(settings, instance, "limits", ["raw_crawl"], checks=False).success
        result = materialize(settings, instance, "limits", [stage], checks=False, run_config=config)
    assert result.success
    case = next(c for c in hostile_corpus.cases if c.id == case_id and c.file == name)
    record_id = record_ids_by_span(settings.lake, "limits")[(name, case.offset)]
    got = case_outcome(stage_outcomes(settings.lake, stage, "limits"), record_id)
    assert (got.label(), got.count) == (f"rejected:{reason}", 1), got
