"""The `mmrecipe` console script: ingest, show and the failure paths a user can hit."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from data_assets.cli import _report
from mmrecipe.settings import Settings
from tests.conftest import land_drop, materialize_drop, metadata_of, run_checks
from tests.warc_fixtures import HttpResponse, warc_bytes

CLI = str(Path(sys.executable).with_name("mmrecipe"))


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMRECIPE_", "DAGSTER_"))}
    env |= {"MMRECIPE_HOME": str(home), "MMRECIPE_TMP": str(home / "tmp")}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def crawl_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "incoming" / "crawl-2026-11-01"
    folder.mkdir(parents=True)
    pages = [HttpResponse(f"http://example.org/{i}.html", f"<html><p>page {i}</p></html>".encode()) for i in range(3)]
    data = warc_bytes(pages)
    (folder / "part-0.warc.gz").write_bytes(data)
    (folder / "part-1.warc.gz").write_bytes(data[: len(data) - 25])  # a truncated upload of the same crawl
    return folder


def test_ingest_of_a_first_drop_trains_the_classifier_and_runs_every_stage(tmp_path: Path, crawl_folder: Path) -> None:
    """A fresh home's first drop, three tiny pages: the installed reference texts train the classifier."""
    home = tmp_path / "home"
    ingest = _run(["ingest", str(crawl_folder)], home)
    assert ingest.returncode == 0, ingest.stderr
    assert "ingest crawl-2026-11-01: raw_crawl: ok" in ingest.stdout
    assert "train quality_classifier: ok" in ingest.stdout and "ingest crawl-2026-11-01: ok" in ingest.stdout
    assert "step FAILED" not in ingest.stderr and "check FAILED [ERROR]" not in ingest.stderr
    landed = home / "landing" / "crawl-2026-11-01"
    assert sorted(p.name for p in landed.iterdir()) == ["_MANIFEST.json", "part-0.warc.gz", "part-1.warc.gz"]
    index = pq.read_table(home / "lake" / "raw_crawl" / "crawl-2026-11-01" / "data.parquet")
    assert index.num_rows == 4 + 3  # warcinfo + 3 pages, then all but the truncated last record

    show = _run(["show", "raw_crawl", "crawl-2026-11-01", "--rows", "2"], home)
    assert show.returncode == 0, show.stderr
    assert "total=8  kept=7  dropped=0  rejected=1" in show.stdout
    assert "rejected  truncated_gzip_member" in show.stdout
    assert show.stdout.count("    - record_id=") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "{folder}", "--drop", "../escape"], "invalid drop name '../escape'"),
        (["show", "raw_crawl", "never-ingested"], "has no materialization"),
        (["build", "no-such-recipe"], "unknown recipe 'no-such-recipe'"),
    ],
)
def test_user_errors_exit_nonzero_with_a_clear_message(
    tmp_path: Path, crawl_folder: Path, args: list[str], message: str
) -> None:
    result = _run([a.format(folder=crawl_folder) for a in args], tmp_path / "home")
    assert result.returncode != 0
    assert message in result.stderr


def test_ingest_of_a_folder_whose_manifest_lists_a_missing_file_fails(tmp_path: Path, crawl_folder: Path) -> None:
    (crawl_folder / "_MANIFEST.json").write_text(
        '{"drop": "crawl-2026-11-01", "files": [{"path": "gone.warc.gz", "size": 1, "sha256": "00"}]}'
    )
    result = _run(["ingest", str(crawl_folder)], tmp_path / "home")
    assert result.returncode == 1
    assert "lists gone.warc.gz, which is not in" in result.stderr


def test_failed_blocking_checks_are_named(
    settings: Settings, instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    land_drop(settings, "d1", {"x.warc.gz": warc_bytes([HttpResponse("http://e.org/", b"<p>x</p>")])})
    path = metadata_of(materialize_drop(settings, instance, "d1"), "raw_crawl")["path"]
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)
    assert _report(run_checks(settings, instance, "d1", "raw_crawl"), "check d1") is False
    out = capsys.readouterr()
    assert "check FAILED [ERROR]: raw_crawl.conservation" in out.err
    assert "check d1: FAILED" in out.out
