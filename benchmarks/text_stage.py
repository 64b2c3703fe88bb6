"""Benchmark of the text stage against an equivalent datatrove 0.10 pipeline, on the same WARC input.

Run: `.venv/bin/python benchmarks/text_stage.py [--rounds 3]` (about 7 minutes on 2 cores). It prints
docs/s, per round and as medians over `--rounds` alternating runs of the two sides, of
- this stage's document path: filtered_text (read by offset, decode, opt-out, resiliparse,
  language ID, Gopher/C4/FineWeb rules, PII, quality classifier, toxicity, MinHash bands) + the
  dedup decision and extracted_text writing; and the same with raw_crawl's indexing of the WARC
  (the graph's first stage, shared with the image and audio stages) added;
- datatrove 0.10.1, in its own venv (`benchmarks/.venv-datatrove`, created on first run, never
  imported here): WarcReader → Trafilatura(favour_precision) → GopherRepetition → GopherQuality →
  C4Quality(no terminal-punct filter, as FineWeb) → FineWebQuality → MinhashDedupSignature (5-grams,
  14 x 8), one task, one worker;
- MinHash signatures alone: `mmrecipe.dedup.minhash_signatures` vs. a per-document
  `datasketch.MinHash(num_perm=112).update_batch` loop over the same texts' word 5-grams;
and the peak RSS of this stage's process at 1x and 4x the input.

Input: every HTTP-200 HTML response of the sample drops (67 real pages), replicated `--copies`
times into one gzipped WARC. Copy 0 is unchanged; copy k > 0 gets a `?mirror=k` URL, loses its
(k mod n)-th <p> paragraph and gains a one-line "Mirror copy k" paragraph, so copies are near
duplicates, not byte-identical. Records carry `WARC-Identified-Payload-Type: text/html` (as
Common Crawl's do) so datatrove does not need libmagic. Both sides run single-process.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DROPS = REPO / "samples" / "drops"
HQ_URLS = REPO / "samples" / "reference" / "hq_urls.txt"
DT_VENV = REPO / "benchmarks" / ".venv-datatrove"
DT_PACKAGES = ["datatrove[io,processing]==0.10.1", "spacy==3.8.18", "lxml_html_clean==0.4.6"]
_PARAGRAPH = re.compile(rb"<p[ >].*?</p>", re.DOTALL | re.IGNORECASE)


# --- input ---------------------------------------------------------------------------------------
def sample_pages() -> list[tuple[str, bytes, bytes]]:
    """(url, HTTP header block, body) of every HTTP-200 HTML response of the sample drops."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    pages = []
    for warc in sorted(SAMPLE_DROPS.glob("*/*.warc.gz")):
        with warc.open("rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                ctype = rec.http_headers.get("Content-Type", "")
                if rec.http_headers.status_code == 200 and "html" in ctype:
                    url = rec.headers.get("WARC-Target-URI").strip("<>")
                    pages.append((url, f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n".encode(), rec.reader.read()))
    return pages


def mirror(body: bytes, k: int) -> bytes:
    """Copy k of a page: one paragraph removed and one added (copy 0 is the page itself)."""
    if k == 0:
        return body
    paragraphs = list(_PARAGRAPH.finditer(body))
    if paragraphs:
        p = paragraphs[k % len(paragraphs)]
        body = body[: p.start()] + body[p.end() :]
    extra = f"<p>Mirror copy {k} of this page, kept for readers in another region.</p>".encode()
    at = body.lower().rfind(b"</body>")
    return body[:at] + extra + body[at:] if at >= 0 else body + extra


def record(url: str, http_head: bytes, body: bytes) -> bytes:
    block = http_head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    digest = base64.b32encode(hashlib.sha1(body).digest()).decode()
    rid = uuid.UUID(bytes=hashlib.md5(url.encode() + body).digest())
    head = (
        f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{rid}>\r\nWARC-Date: 2026-11-01T00:00:00Z\r\n"
        f"WARC-Target-URI: {url}\r\nWARC-Identified-Payload-Type: text/html\r\nWARC-Payload-Digest: sha1:{digest}\r\n"
        f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(block)}\r\n\r\n"
    )
    return gzip.compress(head.encode() + block + b"\r\n\r\n", compresslevel=6, mtime=0)


def make_warc(path: Path, copies: int) -> int:
    """Write the replicated WARC; returns its number of documents."""
    pages = sample_pages()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for k in range(copies):
            for url, head, body in pages:
                out.write(record(url if k == 0 else f"{url}?mirror={k}", head, mirror(body, k)))
    return copies * len(pages)


# --- this stage (child processes) ------------------------------------------------------------------
def child_classifier(lake: str, landing: str, drop: str) -> dict:
    """Train and publish the quality classifier for a benchmark lake (not part of the timed stage)."""
    from mmrecipe.storage import Storage
    from mmrecipe.text.classifier_data import read_url_list, training_set
    from mmrecipe.text.quality_classifier import TrainingParams, train_and_publish

    t0 = time.perf_counter()
    data = training_set(Storage(lake), Storage(landing), [drop], read_url_list(HQ_URLS), max_negatives=500)
    train_and_publish(
        Storage(lake), data.positives, data.negatives, data.calibration, TrainingParams(), "hq_urls", [drop]
    )
    return {"seconds": time.perf_counter() - t0, "positives": len(data.positives)}


def child_stage(lake_root: str, landing_root: str, drop: str, workers: str = "1") -> dict:
    """raw_crawl indexing, filtered_text and extracted_text for one drop, timed; with peak RSS."""
    from mmrecipe.crawl_index import index_drop
    from mmrecipe.dedup import BandIndex, IndexEntries
    from mmrecipe.stage_output import StageWriter
    from mmrecipe.storage import Storage
    from mmrecipe.text.dedup_stage import dedup_drop, extracted_schema
    from mmrecipe.text.pipeline import FILTERED_TEXT_SCHEMA, WRITE_BATCH_ROWS, TextStageConfig, filter_drop
    from mmrecipe.text.quality_classifier import load_scorer

    lake, landing = Storage(lake_root), Storage(landing_root)
    scorer = load_scorer(lake)
    config = TextStageConfig(quality_min_score=scorer.info.score_at_percentile(10), workers=int(workers))
    from mmrecipe.text.language_id import LanguageIdentifier
    from mmrecipe.text.toxicity import toxicity_scores

    LanguageIdentifier(), toxicity_scores(["warm up"])  # model loading is not per-document work
    c0 = time.process_time()
    t0 = time.perf_counter()
    index_drop(landing, lake, drop, sorted(p.name for p in Path(landing.uri(drop)).glob("*.warc.gz")))
    t1, c1 = time.perf_counter(), time.process_time()
    with StageWriter(lake, "filtered_text", drop, FILTERED_TEXT_SCHEMA, WRITE_BATCH_ROWS) as out:
        report = filter_drop(lake, landing, drop, out, config, scorer)
        filtered = out.close()
    index = BandIndex(lake, "filtered_text")
    index.write(drop, IndexEntries.concat(report.entries))
    t2 = time.perf_counter()
    decisions = index.decide(drop)
    with StageWriter(lake, "extracted_text", drop, extracted_schema(decisions), WRITE_BATCH_ROWS) as out:
        dedup_drop(lake, drop, out, decisions)
        extracted = out.close()
    t3 = time.perf_counter()
    return {
        "docs": filtered.counts.total,
        "cpu_s": time.process_time() - c0,
        "index_cpu_s": c1 - c0,
        "index_s": t1 - t0,
        "filter_s": t2 - t1,
        "dedup_s": t3 - t2,
        "candidates": filtered.counts.kept,
        "repeated_texts": report.repeated_texts,
        "kept": extracted.counts.kept,
        "dropped": dict(sorted(extracted.counts.dropped.items())),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _wall(run: dict) -> float:
    return run["index_s"] + run["filter_s"] + run["dedup_s"]


def _stage_wall(run: dict) -> float:
    return run["filter_s"] + run["dedup_s"]


def _stage_cpu(run: dict) -> float:
    return run["cpu_s"] - run["index_cpu_s"]


def run_child(kind: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args], check=True, capture_output=True, text=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- datatrove (its own venv) ----------------------------------------------------------------------
DT_SCRIPT = """
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import (
    C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter,
)
from datatrove.pipeline.readers import WarcReader

data, work = sys.argv[1], sys.argv[2]
pipeline = [
    WarcReader(data, glob_pattern="*.warc.gz"),
    Trafilatura(favour_precision=True, timeout=10.0),
    GopherRepetitionFilter(),
    GopherQualityFilter(),
    C4QualityFilter(filter_no_terminal_punct=False),
    FineWebQualityFilter(),
    MinhashDedupSignature(output_folder=work + "/signatures", config=MinhashConfig()),
]
executor = LocalPipelineExecutor(pipeline=pipeline, tasks=1, workers=1, logging_dir=work + "/logs")
t0 = time.perf_counter()
executor.run()
seconds = time.perf_counter() - t0
stats = json.load(open(work + "/logs/stats.json"))
def totals(step):
    return {k: v.get("total", v) if isinstance(v, dict) else v for k, v in step["stats"].items()}
summary = {step["name"]: totals(step) for step in stats}
print(json.dumps({"seconds": seconds, "stats": summary}))
"""


def ensure_datatrove() -> Path:
    """The datatrove venv's python, creating the venv (no torch is pulled in) on first use."""
    python = DT_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DT_VENV)], check=True)
        (DT_VENV / ".gitignore").write_text("*\n")
        subprocess.run([str(python), "-m", "pip", "install", "-q", *DT_PACKAGES], check=True)
    return python


def run_datatrove(data_dir: Path, work: Path, name: str = "dt") -> dict:
    """datatrove's wall time (its own measure) and CPU time (its process and extractor sandbox, from rusage).

    Each run gets its own output folder `name`: datatrove skips tasks its logging folder marks as done.
    """
    script = work / "datatrove_pipeline.py"
    script.write_text(DT_SCRIPT)
    python = ensure_datatrove()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [str(python), str(script), str(data_dir), str(work / name)], check=True, capture_output=True, text=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(out.stdout.strip().splitlines()[-1]) | {"cpu_s": cpu}


# --- MinHash alone ---------------------------------------------------------------------------------
def minhash_comparison(texts: list[str]) -> dict:
    import numpy as np
    from datasketch import MinHash

    from mmrecipe.dedup import minhash_signatures

    def ours_batches() -> None:
        for i in range(0, len(texts), 128):  # the stage's batch size
            minhash_signatures(texts[i : i + 128])

    def datasketch_loop() -> None:
        for text in texts:
            words = text.lower().split()
            m = MinHash(num_perm=112)
            m.update_batch([" ".join(words[i : i + 5]).encode() for i in range(max(1, len(words) - 4))])

    def best_cpu(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(repeats):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        return min(times)

    minhash_signatures(texts[:128])  # builds the character table and power tables once
    ours, theirs = best_cpu(ours_batches, 3), best_cpu(datasketch_loop, 2)
    words = float(np.mean([len(t.split()) for t in texts]))
    return {"docs": len(texts), "mean_words": words, "ours_docs_s": len(texts) / ours, "ds_docs_s": len(texts) / theirs}


# --- main ------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=30, help="replicas of the 67 sample pages in the 1x WARC")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of both sides on the 1x input")
    parser.add_argument("--workdir", default="", help="where to write inputs and outputs (default: a temp dir)")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "text_stage_results.md"))
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        fn = {"prepare": child_prepare, "stage": child_stage}[opts.child]
        print(json.dumps(fn(*opts.args)))
        return
    work = Path(opts.workdir or tempfile.mkdtemp(prefix="mmrecipe-bench-"))
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    inputs, stage = {}, {}
    for scale in (1, 4):
        drop, root = f"bench-{scale}x", work / f"{scale}x"
        n = make_warc(root / "landing" / drop / "crawl.warc.gz", opts.copies * scale)
        inputs[scale] = (n, str(root / "lake"), str(root / "landing"), drop)
    for _, lake, landing, drop in inputs.values():
        run_child("prepare", lake, landing, drop)
    stage[4] = run_child("stage", *inputs[4][1:])
    ours, theirs = [], []
    for r in range(opts.rounds):  # alternate, so that the machine's load hits both sides alike
        ours.append(run_child("stage", *inputs[1][1:]))
        theirs.append(run_datatrove(Path(inputs[1][2]) / inputs[1][3], work, f"dt-{r}"))
        print(f"round {r + 1}: {_wall(ours[-1]):.1f} s vs datatrove {theirs[-1]['seconds']:.1f} s", flush=True)
    parallel = run_child("stage", *inputs[1][1:], "2")
    docs = inputs[1][0]
    s1 = sorted(ours, key=_wall)[len(ours) // 2]  # the median run, for the drop counts and RSS
    stage[1] = s1
    dt = theirs[0]
    pairs = list(zip(ours, theirs, strict=True))
    ratios = {  # (wall, CPU) per round: the text stage alone, and with raw_crawl's indexing of the WARC
        "stage": [(d["seconds"] / _stage_wall(o), d["cpu_s"] / _stage_cpu(o)) for o, d in pairs],
        "with index": [(d["seconds"] / _wall(o), d["cpu_s"] / o["cpu_s"]) for o, d in pairs],
    }
    mh = minhash_comparison(extracted_texts(inputs[1][1], inputs[1][3]))

    say(
        f"# Text stage benchmark ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} shared cores, "
        f"Python {sys.version.split()[0]})"
    )
    say()
    say(
        f"Input: {opts.copies} copies of the 67 HTTP-200 HTML pages of `samples/drops` ({docs} documents, 1x) "
        f"and {4 * opts.copies} copies ({inputs[4][0]} documents, 4x), built as the module docstring says."
    )
    say("Both pipelines run in one process (datatrove: tasks=1, workers=1; its extractor sandbox is a second process).")
    say(
        f"{opts.rounds} rounds, each running this stage and then datatrove on the 1x input, so that the shared "
        "machine's load falls on both alike. Wall time is what a run takes here; CPU time (user+sys) is the "
        "steadier comparison."
    )
    say()
    say(
        "| round | text stage wall s | CPU s | raw_crawl index wall s | datatrove wall s | CPU s | "
        "ratio: stage (wall, CPU) | ratio: stage + index (wall, CPU) |"
    )
    say("|---|---|---|---|---|---|---|---|")
    for r, (o, d) in enumerate(pairs):
        (sw, sc), (iw, ic) = ratios["stage"][r], ratios["with index"][r]
        say(
            f"| {r + 1} | {_stage_wall(o):.1f} | {_stage_cpu(o):.1f} | {o['index_s']:.1f} | {d['seconds']:.1f} | "
            f"{d['cpu_s']:.1f} | {sw:.1f}x, {sc:.1f}x | {iw:.1f}x, {ic:.1f}x |"
        )
    say()
    for name, label in (("stage", "Text stage"), ("with index", "Text stage + raw_crawl indexing")):
        wall, cpu = zip(*ratios[name], strict=True)
        say(
            f"**{label} vs datatrove, median of {opts.rounds} rounds: {statistics.median(wall):.1f}x (wall), "
            f"{statistics.median(cpu):.1f}x (CPU)**; lowest round {min(wall):.1f}x (wall), {min(cpu):.1f}x (CPU)."
        )
        say()
    say(
        "- The text stage is filtered_text (read by offset, decode, opt-out, extraction, language ID, rules, PII, "
        "quality classifier, toxicity, MinHash bands) + extracted_text (cross-drop dedup decision and writing); "
        "raw_crawl's index of the WARC is the graph's first stage, shared with the image and audio stages. "
        f"Median run: {docs / _stage_wall(s1):.0f} docs/s, filtered_text alone {docs / s1['filter_s']:.0f} docs/s. "
        f"{s1['repeated_texts']} of its documents had an extracted text already decided earlier in the drop, and "
        "reused that verdict."
    )
    say(
        f"- datatrove 0.10.1 is WarcReader → Trafilatura → GopherRepetition → GopherQuality → C4 → FineWeb → "
        f"MinhashDedupSignature; median run {docs / statistics.median(d['seconds'] for d in theirs):.1f} docs/s."
    )
    say(
        f"- filtered_text with `workers=2` (2 spawned processes; not used for the ratio): "
        f"{parallel['filter_s']:.1f} s, {docs / parallel['filter_s']:.0f} docs/s."
    )
    say()
    say(
        f"MinHash signatures alone, on the {mh['docs']} texts that passed the filters (mean {mh['mean_words']:.0f} "
        f"words; CPU time, best of 3 vs best of 2): mmrecipe {mh['ours_docs_s']:.0f} docs/s, datasketch per-document "
        f"`MinHash(num_perm=112).update_batch` loop {mh['ds_docs_s']:.0f} docs/s: "
        f"**{mh['ours_docs_s'] / mh['ds_docs_s']:.1f}x**."
    )
    say()
    say("Peak RSS of the stage process (raw_crawl index + filtered_text + extracted_text, models loaded):")
    for scale in (1, 4):
        say(
            f"- {scale}x ({inputs[scale][0]} documents): {stage[scale]['peak_rss_mb']:.0f} MB "
            f"(wall {_wall(stage[scale]):.1f} s)"
        )
    say()
    say(
        f"mmrecipe at 1x: {s1['candidates']} documents passed the per-document filters, {s1['kept']} were kept "
        f"after dedup. Drops: {json.dumps(s1['dropped'])}."
    )
    say(f"datatrove at 1x: {json.dumps(dt['stats'], ensure_ascii=False)}")
    Path(opts.results).write_text("\n".join(lines) + "\n")


def extracted_texts(lake: str, drop: str) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(Path(lake) / "filtered_text" / drop / "data.parquet", columns=["text"])["text"].to_pylist()


def child_prepare(lake: str, landing: str, drop: str) -> dict:
    """Index the drop and train the quality classifier (untimed: the stage re-indexes, timed, in its own run)."""
    from mmrecipe.crawl_index import index_drop
    from mmrecipe.storage import Storage

    index_drop(Storage(landing), Storage(lake), drop, ["crawl.warc.gz"])
    return child_classifier(lake, landing, drop)


if __name__ == "__main__":
    main()
