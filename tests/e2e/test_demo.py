"""`mmrecipe demo` on the bundled sample drops, end to end, then `show` and `explain` on what it built."""

import re

import pyarrow.parquet as pq
import pytest

from tests.conftest import SampleDemo, run_cli

pytestmark = pytest.mark.slow


def test_demo_runs_every_stage_and_explains_a_training_document(sample_demo: SampleDemo) -> None:
    home, stdout = sample_demo.home, sample_demo.stdout
    for line in ("train quality_classifier: ok", "ingest sample-a: ok", "ingest sample-b: ok",
                 "build default: ok", "build english_hq: ok", "leaderboard: ok"):  # fmt: skip
        assert line in stdout
    summary = {tuple(line.split()[:2]): line.split()[2:] for line in stdout.splitlines() if line.strip()}
    assert summary[("raw_crawl", "sample-a")][:2] == ["318", "318"]  # every WARC record indexed
    assert summary[("transcribed_audio", "sample-a")][:3] == ["6", "4", "2"]  # 4 speech clips, silence + noise
    for recipe in ("default", "english_hq"):  # each at its best learning rate, with its seed count
        assert re.search(rf"^\| {recipe} \| (0\.003|0\.01) \| 2 \| ", stdout, re.MULTILINE), recipe
    assert "seed noise" in stdout

    shown = run_cli(["show", "extracted_text", "sample-a"], home)
    assert shown.returncode == 0, shown.stderr
    assert "dropped   opt_out" in shown.stdout  # the planted noai page

    manifest = pq.read_table(home / "lake" / "mixture" / "default" / "manifest.parquet")
    doc_id = manifest.column("doc_id")[0].as_py()
    explained = run_cli(["explain", doc_id], home)
    assert explained.returncode == 0, explained.stderr
    assert "WARC-Type: response" in explained.stdout
    assert "sha256 matches the raw_crawl index" in explained.stdout
