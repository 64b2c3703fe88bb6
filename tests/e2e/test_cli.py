"""The `mmrecipe` console script: ingest, show and the failure paths a user can hit."""

import random
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from data_assets.cli import _report, main
from mmrecipe.settings import Settings
from mmrecipe.stage_output import committed_parts, read_stage_table
from mmrecipe.storage import Storage
from tests.committed_edits import recommit
from tests.conftest import REPO, land_drop, materialize_drop, metadata_of, run_checks, run_cli
from tests.warc_fixtures import HttpResponse, warc_bytes


@pytest.fixture
def crawl_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "incoming" / "crawl-2026-11-01"
    folder.mkdir(parents=True)
    pages = [HttpResponse(f"http://example.org/{i}.html", f"<html><p>page {i}</p></html>".encode()) for i in range(3)]
    data = warc_bytes(pages)
    (folder / "part-0.warc.gz").write_bytes(data)
    (folder / "part-1.warc.gz").write_bytes(data[: len(data) - 25])  # a truncated upload of the same crawl
    return folder


def test_ingest_of_a_first_drop_trains_the_classifier_and_runs_every_stage(
    settings: Settings, crawl_folder: Path
) -> None:
    """A fresh home's first drop, three tiny pages: the installed reference texts train the classifier.

    The suite's one run of the installed console script (the rest call the CLI in-process).
    """
    home = Path(settings.home)  # the `settings` fixture's MMRECIPE_HOME: no instance, lake data or classifier yet
    ingest = run_cli(["ingest", str(crawl_folder)], home)
    assert ingest.returncode == 0, ingest.stderr
    assert "ingest crawl-2026-11-01: raw_crawl: ok" in ingest.stdout
    assert "train quality_classifier: ok" in ingest.stdout and "ingest crawl-2026-11-01: ok" in ingest.stdout
    assert "step FAILED" not in ingest.stderr and "check FAILED [ERROR]" not in ingest.stderr
    summary = [line.split() for line in ingest.stdout.splitlines() if line.startswith("raw_crawl ")]
    assert summary == [["raw_crawl", "crawl-2026-11-01", "8", "7", "0", "1", "truncated_gzip_member", "1"]]
    landed = home / "landing" / "crawl-2026-11-01"
    assert sorted(p.name for p in landed.iterdir()) == ["_MANIFEST.json", "part-0.warc.gz", "part-1.warc.gz"]
    index = read_stage_table(Storage(str(home / "lake")), "raw_crawl", "crawl-2026-11-01")
    assert index.num_rows == 4 + 3  # warcinfo + 3 pages, then all but the truncated last record

    code, out, err = _invoke(["show", "raw_crawl", "crawl-2026-11-01", "--rows", "2"])
    assert code == 0, err
    assert "total=8  kept=7  dropped=0  rejected=1" in out
    assert "rejected  truncated_gzip_member" in out
    assert out.count("    - record_id=") == 2


def _invoke(args: list[str]) -> tuple[int, str, str]:
    """Run the CLI in-process (the `settings` fixture's MMRECIPE_HOME): exit code, stdout and stderr."""
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "{folder}", "--drop", "../escape"], "Error: invalid drop name '../escape'"),
        (["show", "raw_crawl", "never-ingested"], "Error: unknown partition 'never-ingested' of raw_crawl: choose "),
        (["build", "no-such-recipe"], "Error: unknown recipe 'no-such-recipe': choose one of ['default', "),
    ],
)
def test_user_errors_exit_nonzero_with_a_clear_message(
    settings: Settings, crawl_folder: Path, args: list[str], message: str
) -> None:
    code, _, err = _invoke([a.format(folder=crawl_folder) for a in args])
    assert code == 1
    assert err.startswith(message), err


def test_ingest_of_a_folder_whose_manifest_lists_a_missing_file_fails(settings: Settings, crawl_folder: Path) -> None:
    (crawl_folder / "_MANIFEST.json").write_text(
        '{"drop": "crawl-2026-11-01", "files": [{"path": "gone.warc.gz", "size": 1, "sha256": "00"}]}'
    )
    code, _, err = _invoke(["ingest", str(crawl_folder)])
    assert code == 1
    assert err.startswith(f"Error: {crawl_folder / '_MANIFEST.json'}: lists gone.warc.gz, which is not in"), err
    assert not (Path(settings.landing) / "crawl-2026-11-01").exists()


def test_a_folder_without_warc_names_the_folder_and_lands_nothing(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "mirror"
    (folder / "img").mkdir(parents=True)
    (folder / "index.html").write_text("<p>a page</p>")
    (folder / "img" / "a.png").write_bytes(b"\x89PNG")
    code, _, err = _invoke(["ingest", str(folder)])
    assert code == 1
    assert err.splitlines()[0] == (
        f"Error: {folder}: no *.warc or *.warc.gz file (2 other files, e.g. img/a.png, index.html). "
        "Point `mmrecipe ingest` at a folder of WARC files."
    )
    assert not any(Path(settings.landing).iterdir())


def test_a_garbage_drop_fails_with_its_reject_reasons_and_lands_only_warc_files(
    settings: Settings, tmp_path: Path
) -> None:
    """One random file renamed .warc.gz, beside a wget mirror's page: no usable record, exit 1, reasons named."""
    folder = tmp_path / "garbage"
    folder.mkdir()
    (folder / "crawl.warc.gz").write_bytes(random.Random(7).randbytes(4096))
    (folder / "index.html").write_text("<p>mirrored page</p>")
    code, out, err = _invoke(["ingest", str(folder)])
    assert code == 1
    assert out.splitlines()[0] == "ingest garbage: landed the WARC files only, skipped 1 other files (index.html)"
    assert "ingest garbage: raw_crawl: ok" in out
    assert err.splitlines()[0] == (
        f"ingest garbage: FAILED: no usable HTTP response record in {folder} (1 record: garbage_bytes 1)"
    )
    assert sorted(p.name for p in (Path(settings.landing) / "garbage").iterdir()) == ["_MANIFEST.json", "crawl.warc.gz"]


VALID = (REPO / "recipes" / "default.yaml").read_text()


@pytest.mark.parametrize(
    ("recipe", "first_line"),
    [
        (
            VALID.replace("total_tokens:", "total_token:"),
            "Error: {path}: field 'total_token': unknown field; allowed: ",
        ),
        (VALID.replace("weight:", "weigth:", 1), "Error: {path}: field 'sources[0].weigth': unknown field; allowed: "),
        (VALID.replace("seed:", "seed: [", 1), "Error: {path}: field '(yaml)': not valid YAML at line "),
    ],
)
def test_a_broken_recipe_is_reported_before_any_run(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recipe: str, first_line: str
) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "default.yaml").write_text(recipe)
    monkeypatch.setenv("MMRECIPE_RECIPES", str(recipes))
    code, out, err = _invoke(["build", "default"])
    assert code == 1
    assert err.splitlines() == [err.splitlines()[0]]  # one line: no Dagster log, no stack trace
    assert err.startswith(first_line.format(path=recipes / "default.yaml")), err
    assert out == "" and not Path(settings.dagster_home, "storage").exists()  # no run was launched


def test_a_missing_recipes_folder_is_reported_as_missing(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMRECIPE_RECIPES", str(tmp_path / "no-recipes"))
    code, _, err = _invoke(["build", "default"])
    assert code == 1
    assert err.splitlines()[0] == (
        f"Error: recipes folder {tmp_path / 'no-recipes'} does not exist: "
        "set MMRECIPE_RECIPES to a folder of <name>.yaml recipes"
    )


def test_failed_blocking_checks_are_named(
    settings: Settings, instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    land_drop(settings, "d1", {"x.warc.gz": warc_bytes([HttpResponse("http://e.org/", b"<p>x</p>")])})
    assert metadata_of(materialize_drop(settings, instance, "d1"), "raw_crawl")["path"].endswith("raw_crawl/data/d1")
    path = committed_parts(Storage(settings.lake), "raw_crawl", "d1")[0]
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)
    recommit(Storage(settings.lake), path)
    assert _report(run_checks(settings, instance, "d1", "raw_crawl"), "check d1") is False
    out = capsys.readouterr()
    assert "check FAILED [ERROR]: raw_crawl.conservation" in out.err
    assert "check d1: FAILED" in out.out


def test_verify_checks_every_committed_part_against_its_digest(settings: Settings) -> None:
    """`mmrecipe verify` passes a committed partition and names a part changed after its commit."""
    import pyarrow as pa

    from mmrecipe.stage_output import PROVENANCE_FIELDS, StageWriter

    lake = Storage(settings.lake)
    with StageWriter(lake, "sized", "d1", pa.schema(PROVENANCE_FIELDS)) as writer:
        for i in range(3):
            writer.keep({"record_id": f"r{i}", "drop": "d1", "warc_path": "a.warc.gz", "warc_offset": i})
        writer.reject({"record_id": "r9", "drop": "d1", "warc_path": "a.warc.gz", "warc_offset": 9}, "bad", "x")
        writer.close()
    assert _invoke(["verify", "sized"])[:2] == (0, "sized: 1 partition(s) checked, 0 problem(s)\n")
    [part] = committed_parts(lake, "sized", "d1")
    data = bytearray(lake.read_bytes(part))
    data[len(data) // 3] ^= 0xFF
    lake.write_bytes(part, bytes(data))
    code, out, err = _invoke(["verify", "sized", "d1"])
    assert code == 1 and "1 problem(s)" in out
    assert err.startswith(f"sized[d1]: committed part {part} has sha256") and "re-materialize sized" in err
    assert _invoke(["verify", "nothing"])[0] == 1
