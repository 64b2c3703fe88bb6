"""`mmrecipe demo` on the bundled sample drops, end to end, then `show` and `explain` on what it built."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

CLI = str(Path(sys.executable).with_name("mmrecipe"))


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMRECIPE_", "DAGSTER_"))}
    env |= {"MMRECIPE_HOME": str(home), "MMRECIPE_TMP": str(home / "tmp")}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=1200)


@pytest.mark.slow
def test_demo_runs_every_stage_and_explains_a_training_document(tmp_path: Path) -> None:
    home = tmp_path / "home"
    demo = _run(["demo", "--seeds", "0,1", "--train-tokens", "4096"], home)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    for line in ("train quality_classifier: ok", "ingest sample-a: ok", "ingest sample-b: ok",
                 "build default: ok", "build english_hq: ok", "leaderboard: ok"):  # fmt: skip
        assert line in demo.stdout
    summary = {tuple(line.split()[:2]): line.split()[2:] for line in demo.stdout.splitlines() if line.strip()}
    assert summary[("raw_crawl", "sample-a")][:2] == ["318", "318"]  # every WARC record indexed
    assert summary[("transcribed_audio", "sample-a")][:3] == ["6", "4", "2"]  # 4 speech clips, silence + noise
    assert "| default | 2 |" in demo.stdout and "| english_hq | 2 |" in demo.stdout  # seeds shown per recipe
    assert "seed noise" in demo.stdout

    shown = _run(["show", "extracted_text", "sample-a"], home)
    assert shown.returncode == 0, shown.stderr
    assert "dropped   opt_out" in shown.stdout  # the planted noai page

    manifest = pq.read_table(home / "lake" / "mixture" / "default" / "manifest.parquet")
    doc_id = manifest.column("doc_id")[0].as_py()
    explained = _run(["explain", doc_id], home)
    assert explained.returncode == 0, explained.stderr
    assert "WARC-Type: response" in explained.stdout
    assert "sha256 matches the raw_crawl index" in explained.stdout
