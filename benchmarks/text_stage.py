"""Benchmark of the text stage against datatrove 0.10.1's FineWeb pipeline, like for like, on the same WARC input.

Run: `.venv/bin/python benchmarks/text_stage.py [--copies 30] [--rounds 3] [--rss-scale 4]`. Each round runs both
sides of every row back to back, each in its own process, and the results table states what differs per row:
- whole text stage, same extractor: raw_crawl indexing + filtered_text (read by offset, decode, opt-out,
  trafilatura, language ID, Gopher/C4/FineWeb rules, PII, quality classifier, toxicity, MinHash bands) +
  extracted_text (dedup), with the `--preset` rules preset (default `fineweb`: English only, as FineWeb), vs
  datatrove: WarcReader → Trafilatura(favour_precision) → LanguageFilter(en, 0.65) → GopherRepetition →
  GopherQuality → C4Quality(no terminal-punct filter, as FineWeb) → FineWebQuality → MinhashDedupSignature
  (one task, one worker), in its own venv (`benchmarks/datatrove_env.py` makes it; never imported here). Both
  sides' language ID is fastText with the same model file (the lid.176.ftz that mmrecipe uses; datatrove's own
  would be downloaded); with `--preset multilingual` datatrove runs without its LanguageFilter;
- whole text stage, each side's default (resiliparse here; datatrove 0.10.1 has no resiliparse extractor);
- the four rule families alone on identical texts (the resiliparse texts of the input) vs datatrove's four
  filters chained;
- the stage vs its floor: fastwarc read + resiliparse extraction alone over the same WARC, with and without
  the raw_crawl indexing pass (the record index is its own asset, shared by every modality).
Both sides' times include their model/tokenizer loading; neither includes Python's start or imports (each side
imports its modules before its clocks start). It also prints the verdict cache's hit rate, MinHash signatures
alone (`mmrecipe.dedup.minhash_signatures` vs a per-document `datasketch.MinHash(num_perm=112).update_batch`
loop), and the peak RSS at 1x and `--rss-scale` x the input. Its output replaces the part of the `--results`
file between the file's two markers; the rest of the file (hand-written notes, earlier runs) is kept.

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

from datatrove_env import REPO, ensure_datatrove_venv, sample_pages

from mmrecipe.text.language_id import default_model_path

HQ_URLS = REPO / "samples" / "reference" / "hq_urls.txt"
_PARAGRAPH = re.compile(rb"<p[ >].*?</p>", re.DOTALL | re.IGNORECASE)


# --- input ---------------------------------------------------------------------------------------
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


def child_stage(
    lake_root: str,
    landing_root: str,
    drop: str,
    workers: str = "1",
    extractor: str = "resiliparse",
    preset: str = "fineweb",
) -> dict:
    """raw_crawl indexing, filtered_text and extracted_text for one drop, timed; with peak RSS.

    Model loading (language ID, toxicity) is timed, as datatrove's loading of spaCy is (the quality classifier,
    a few ms, loads before); the modules the models need are imported first, as datatrove's are in `DT_SCRIPT`.
    """
    import fasttext  # noqa: F401  (imports only: the models load inside the timed stage)
    import joblib  # noqa: F401
    import sklearn.calibration
    import sklearn.feature_extraction.text
    import sklearn.svm  # noqa: F401  (the modules the toxicity model's pickle names)

    from mmrecipe.crawl_index import index_drop, read_records
    from mmrecipe.dedup import BandIndex
    from mmrecipe.engine import LocalEngine
    from mmrecipe.storage import Storage
    from mmrecipe.text.dedup_stage import dedup_drop
    from mmrecipe.text.pipeline import TextStageConfig, filter_drop
    from mmrecipe.text.quality_classifier import load_scorer

    lake, landing = Storage(lake_root), Storage(landing_root)
    scorer = load_scorer(lake)
    threshold = scorer.info.score_at_percentile(10)
    config = TextStageConfig(extractor=extractor, quality_min_score=threshold, rules_preset=preset)
    engine = LocalEngine(int(workers))
    c0 = time.process_time()
    t0 = time.perf_counter()
    index_drop(landing, lake, drop, sorted(p.name for p in Path(landing.uri(drop)).glob("*.warc.gz")))
    t1, c1 = time.perf_counter(), time.process_time()
    html_bytes = sum(read_records(lake, drop, "html", ["warc_length"])["warc_length"].to_pylist())
    shard_bytes = html_bytes + 1 if engine.workers == 1 else max(1, html_bytes // (4 * engine.workers))
    run, report = filter_drop(engine, lake, landing, drop, config, scorer, shard_bytes)
    filtered = run.output
    index = BandIndex(lake, "filtered_text")  # filter_drop wrote the drop's index
    t2 = time.perf_counter()
    extracted = dedup_drop(engine, lake, drop, index)[0].output
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
        "rules_preset": config.rules_preset,
        "kept": extracted.counts.kept,
        "dropped": dict(sorted(extracted.counts.dropped.items())),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps_s": {name: s.seconds for name, s in run.steps.items()},  # filtered_text's step timers (wall)
    }


def child_floor(warc: str, texts_out: str) -> dict:
    """The floor: fastwarc read + resiliparse extraction alone over the WARC's responses; writes the texts."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text

    c0, t0 = time.process_time(), time.perf_counter()
    texts = []
    with open(warc, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
            html = rec.reader.read().decode("utf-8", "replace")
            texts.append(extract_plain_text(html, main_content=True))
    result = {"docs": len(texts), "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    Path(texts_out).write_text(json.dumps(texts))
    return result


def child_rules(texts_in: str) -> dict:
    """The FineWeb rule set alone (Gopher repetition, Gopher quality, C4, FineWeb) over identical texts."""
    from mmrecipe.text.fineweb_rules import apply_fineweb_rules
    from mmrecipe.text.quality_rules import thresholds_for

    texts = [t for t in json.loads(Path(texts_in).read_text()) if t.strip()]
    en = thresholds_for("en")
    c0, t0 = time.process_time(), time.perf_counter()
    kept = sum(apply_fineweb_rules(t, en).reason is None for t in texts)
    return {"docs": len(texts), "kept": kept, "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def _wall(run: dict) -> float:
    return run["index_s"] + run["filter_s"] + run["dedup_s"]


def _stage_wall(run: dict) -> float:
    return run["filter_s"] + run["dedup_s"]


def _stage_cpu(run: dict) -> float:
    return run["cpu_s"] - run["index_cpu_s"]


def time_shares(run: dict) -> str:
    """The stage's wall time by part: raw_crawl indexing, each filtered_text step, the rest, extracted_text."""
    steps = run["steps_s"]
    parts = {"raw_crawl indexing": run["index_s"]}
    parts |= {f"`{name}`": seconds for name, seconds in steps.items()}
    parts["rest of filtered_text (MinHash bands, Parquet writes, dedup index)"] = run["filter_s"] - sum(steps.values())
    parts["extracted_text (cross-drop dedup, writes)"] = run["dedup_s"]
    total = _wall(run)
    return ", ".join(f"{name} {seconds:.1f} s ({seconds / total:.0%})" for name, seconds in parts.items())


def timed_stage(*args: str) -> dict:
    """A stage run with its whole wall time (raw_crawl index + filtered_text + extracted_text) as `seconds`."""
    run = run_child("stage", *args)
    return run | {"seconds": _wall(run)}


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
    C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter, LanguageFilter,
)
from datatrove.pipeline.readers import WarcReader
from datatrove.utils.lid import FT176LID

import fasttext, resource, spacy, trafilatura  # imports only: models load inside the timed run, as ours do

data, work, lid_model = sys.argv[1], sys.argv[2], sys.argv[3]


class SameModelLID(FT176LID):  # datatrove's fastText language ID on mmrecipe's model file (its own: a download)
    @property
    def model(self):
        if self._model is None:
            self._model = fasttext.FastText._FastText(lid_model)
        return self._model


language = LanguageFilter(languages=["en"], language_threshold=0.65)
language.model = SameModelLID(["en"])
pipeline = [
    WarcReader(data, glob_pattern="*.warc.gz"),
    Trafilatura(favour_precision=True, timeout=10.0),
    *([language] if lid_model else []),
    GopherRepetitionFilter(),
    GopherQualityFilter(),
    C4QualityFilter(filter_no_terminal_punct=False),
    FineWebQualityFilter(),
    MinhashDedupSignature(output_folder=work + "/signatures", config=MinhashConfig()),
]
executor = LocalPipelineExecutor(pipeline=pipeline, tasks=1, workers=1, logging_dir=work + "/logs")
usage = resource.getrusage(resource.RUSAGE_SELF)
startup_cpu = usage.ru_utime + usage.ru_stime  # interpreter start and imports: not counted
t0 = time.perf_counter()
executor.run()
seconds = time.perf_counter() - t0
stats = json.load(open(work + "/logs/stats.json"))
def totals(step):
    return {k: v.get("total", v) if isinstance(v, dict) else v for k, v in step["stats"].items()}
summary = {step["name"]: totals(step) for step in stats}
print(json.dumps({"seconds": seconds, "startup_cpu_s": startup_cpu, "stats": summary}))
"""


DT_FILTERS_SCRIPT = """
import json, sys, time
import spacy  # imports only: spaCy's tokenizer loads inside the timed loop
from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter,
)

texts = [t for t in json.load(open(sys.argv[1])) if t.strip()]
filters = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False),
           FineWebQualityFilter()]
c0, t0 = time.process_time(), time.perf_counter()
kept = 0
for i, text in enumerate(texts):
    doc = Document(text=text, id=str(i))
    kept += all(f.filter(doc) is True for f in filters)  # stops at the first filter that drops it
print(json.dumps({"docs": len(texts), "kept": kept, "seconds": time.perf_counter() - t0,
                  "cpu_s": time.process_time() - c0}))
"""


def run_datatrove_filters(texts: Path, work: Path) -> dict:
    """datatrove's four filters alone, chained as in FineWeb, over the same texts in one process."""
    script = work / "datatrove_filters.py"
    script.write_text(DT_FILTERS_SCRIPT)
    out = subprocess.run(
        [str(ensure_datatrove_venv()), str(script), str(texts)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_datatrove(data_dir: Path, work: Path, name: str = "dt", lid_model: str = "") -> dict:
    """datatrove's wall time (its own measure) and CPU time (its process and extractor sandbox, from rusage,
    less the CPU its process spent starting and importing before the pipeline ran).

    Each run gets its own output folder `name`: datatrove skips tasks its logging folder marks as done. With
    `lid_model`, a LanguageFilter(en, 0.65) on that fastText model follows the extractor, as in FineWeb.
    """
    script = work / "datatrove_pipeline.py"
    script.write_text(DT_SCRIPT)
    python = ensure_datatrove_venv()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [str(python), str(script), str(data_dir), str(work / name), lid_model],
        check=True,
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) - result["startup_cpu_s"]
    return result | {"cpu_s": cpu}


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
def _median(runs: list[dict], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=30, help="replicas of the 67 sample pages in the 1x WARC")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of both sides on the 1x input")
    parser.add_argument("--rss-scale", type=int, default=4, help="input multiple of the peak-RSS run (0: none)")
    parser.add_argument("--preset", default="fineweb", help="mmrecipe's rules preset (fineweb, multilingual, ...)")
    parser.add_argument("--workdir", default="", help="where to write inputs and outputs (default: a temp dir)")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "text_stage_results.md"))
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        fn = {"prepare": child_prepare, "stage": child_stage, "floor": child_floor, "rules": child_rules}[opts.child]
        print(json.dumps(fn(*opts.args)))
        return
    work = Path(opts.workdir or tempfile.mkdtemp(prefix="mmrecipe-bench-"))
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    loads = [os.getloadavg()[0]]  # the 1-minute load average, at the start and after each round
    inputs, stage = {}, {}
    scales = (1, opts.rss_scale) if opts.rss_scale > 1 else (1,)
    for scale in scales:
        drop, root = f"bench-{scale}x", work / f"{scale}x"
        n = make_warc(root / "landing" / drop / "crawl.warc.gz", opts.copies * scale)
        inputs[scale] = (n, str(root / "lake"), str(root / "landing"), drop)
    for _, lake, landing, drop in inputs.values():
        run_child("prepare", lake, landing, drop)
    preset = opts.preset
    lid_model = default_model_path() if preset == "fineweb" else ""  # datatrove's LanguageFilter, on our model
    if len(scales) > 1:
        stage[scales[1]] = run_child("stage", *inputs[scales[1]][1:], "1", "resiliparse", preset)
    docs, lake1, landing1, drop1 = inputs[1]
    warc1, texts1 = Path(landing1) / drop1 / "crawl.warc.gz", work / "texts-1x.json"
    runs: dict[str, list[dict]] = {k: [] for k in ("ours", "ours_traf", "dt", "floor", "rules", "dt_rules")}
    for r in range(opts.rounds):  # alternate, so that the machine's load hits both sides alike
        runs["ours"].append(timed_stage(lake1, landing1, drop1, "1", "resiliparse", preset))
        runs["ours_traf"].append(timed_stage(lake1, landing1, drop1, "1", "trafilatura", preset))
        runs["dt"].append(run_datatrove(Path(landing1) / drop1, work, f"dt-{r}", lid_model))
        runs["floor"].append(run_child("floor", str(warc1), str(texts1)))
        runs["rules"].append(run_child("rules", str(texts1)))
        runs["dt_rules"].append(run_datatrove_filters(texts1, work))
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]['seconds']:.1f} s" for k, v in runs.items()), flush=True)
    parallel = run_child("stage", lake1, landing1, drop1, "2", "resiliparse", preset)
    s1 = sorted(runs["ours"], key=_wall)[len(runs["ours"]) // 2]  # the median run, for the drop counts and RSS
    stage[1] = s1
    dt = runs["dt"][0]
    mh = minhash_comparison(extracted_texts(lake1, drop1))

    say(
        f"# Text stage benchmark ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} shared cores, "
        f"Python {sys.version.split()[0]}; 1-minute load average {min(loads):.1f}-{max(loads):.1f} at the start and "
        "after each round, this benchmark's own process included)"
    )
    say()
    say(
        f"Input: {opts.copies} copies of the 67 HTTP-200 HTML pages of `samples/drops` ({docs} documents, 1x) "
        + (
            f"and {opts.rss_scale * opts.copies} copies ({inputs[scales[1]][0]} documents, {opts.rss_scale}x), "
            if len(scales) > 1
            else ""
        )
        + "built as the module docstring says "
        f"(near-duplicate mirrors: {s1['repeated_texts']} of the {docs} extracted texts "
        f"({s1['repeated_texts'] / docs:.0%}) "
        "repeated one already decided in the drop and reused its verdict: the verdict cache's hit rate)."
    )
    say(
        f"Every process runs one worker on one core; {opts.rounds} round(s), each running every row's two sides "
        "back to back, medians quoted. Each side's time (wall and CPU) includes its own model and tokenizer loading "
        "(mmrecipe: language ID and toxicity models; datatrove: spaCy's blank English"
        + (", and the same language-ID model file" if lid_model else "")
        + "), and neither "
        "includes Python's start or imports (both sides import their modules before their clocks start). "
        f"mmrecipe uses the `{s1['rules_preset']}` rules preset (datatrove's exact verdicts for English"
        + ("; English only, as FineWeb and datatrove's LanguageFilter" if lid_model else "")
        + ")."
    )
    say()
    say("| comparison | what differs between the sides | mmrecipe s | other side s | ratio (wall) | ratio (CPU) |")
    say("|---|---|---|---|---|---|")

    def row(label: str, differs: str, ours: list[dict], theirs: list[dict], key: str = "seconds") -> float:
        o, t = _median(ours, key), _median(theirs)
        cpu = _median(theirs, "cpu_s") / _median(ours, "cpu_s")
        say(f"| {label} | {differs} | {o:.1f} | {t:.1f} | **{t / o:.1f}x** | {cpu:.1f}x |")
        return t / o

    row(
        "whole text stage, same extractor (trafilatura) vs datatrove FineWeb pipeline",
        "mmrecipe also runs PII, quality classifier, toxicity, cross-drop dedup, raw_crawl indexing; datatrove "
        "only computes MinHash signatures",
        runs["ours_traf"],
        runs["dt"],
    )
    row(
        "whole text stage, each side's default (mmrecipe: resiliparse; datatrove: trafilatura)",
        "the extractor, and the steps above",
        runs["ours"],
        runs["dt"],
    )
    row(
        f"filters alone on identical text ({runs['rules'][0]['docs']} resiliparse texts of the 1x input)",
        "nothing: Gopher repetition → Gopher quality → C4 → FineWeb on both, chained; "
        f"kept {runs['rules'][0]['kept']} (mmrecipe) vs {runs['dt_rules'][0]['kept']} (datatrove)",
        runs["rules"],
        runs["dt_rules"],
    )
    floor_wall, floor_cpu = _median(runs["floor"]), _median(runs["floor"], "cpu_s")
    stage_wall = statistics.median(map(_stage_wall, runs["ours"]))
    stage_cpu = statistics.median(map(_stage_cpu, runs["ours"]))
    say(
        "| text stage (filtered_text + extracted_text) vs the floor (fastwarc read + resiliparse extraction alone, "
        "same WARC) | the stage also reads by offset, and runs every filter, model, dedup and writer | "
        f"{stage_wall:.1f} | {floor_wall:.1f} | **{floor_wall / stage_wall:.2f}x** | {floor_cpu / stage_cpu:.2f}x |"
    )
    say(
        "| the same, with the raw_crawl indexing pass | the stage also indexes the WARC (the record index, its own "
        f"asset) | {_median(runs['ours']):.1f} | {floor_wall:.1f} | **{floor_wall / _median(runs['ours']):.2f}x** | "
        f"{floor_cpu / _median(runs['ours'], 'cpu_s'):.2f}x |"
    )
    say()
    say(
        "- mmrecipe's whole-stage time is raw_crawl indexing + filtered_text (read by offset, decode, opt-out, "
        "extraction, language ID, rules, PII, quality classifier, toxicity, MinHash bands) + extracted_text "
        f"(cross-drop dedup and writing). Median run: {docs / _wall(s1):.0f} docs/s "
        f"(without indexing {docs / _stage_wall(s1):.0f} docs/s)."
    )
    say(f"- Where the median run's wall time goes: {time_shares(s1)}.")
    say(
        "- datatrove 0.10.1 is WarcReader → Trafilatura → "
        + ("LanguageFilter(en, 0.65; mmrecipe's lid.176.ftz) → " if lid_model else "")
        + "GopherRepetition → GopherQuality → C4 → FineWeb → "
        f"MinhashDedupSignature (tasks=1, workers=1); median run {docs / _median(runs['dt']):.1f} docs/s. datatrove "
        "0.10.1 has no resiliparse extractor, so there is no resiliparse-on-both row."
    )
    say(
        f"- filtered_text on the local engine with 2 workers (2 spawned processes, 8 shards; not used for the ratios): "
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
    for scale in scales:
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
    write_results(Path(opts.results), "\n".join(lines))


RESULTS_START, RESULTS_END = "<!-- text_stage.py output: start -->", "<!-- text_stage.py output: end -->"


def write_results(path: Path, output: str) -> None:
    """Put this run's output between the results file's markers; what follows them (hand-written notes, earlier
    runs) is kept. A file without markers is kept whole below the new output."""
    old = path.read_text() if path.exists() else ""
    rest = old.split(RESULTS_END, 1)[1] if RESULTS_END in old else ("\n" + old if old else "")
    path.write_text(f"{RESULTS_START}\n{output}\n{RESULTS_END}{rest}" + ("" if rest.endswith("\n") else "\n"))


def extracted_texts(lake: str, drop: str) -> list[str]:
    from mmrecipe.stage_output import read_stage_table
    from mmrecipe.storage import Storage

    storage = Storage(lake)
    return read_stage_table(storage, "filtered_text", drop, columns=["text"])["text"].to_pylist()


def child_prepare(lake: str, landing: str, drop: str) -> dict:
    """Index the drop and train the quality classifier (untimed: the stage re-indexes, timed, in its own run)."""
    from mmrecipe.crawl_index import index_drop
    from mmrecipe.storage import Storage

    index_drop(Storage(landing), Storage(lake), drop, ["crawl.warc.gz"])
    return child_classifier(lake, landing, drop)


if __name__ == "__main__":
    main()
