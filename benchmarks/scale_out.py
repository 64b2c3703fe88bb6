"""Scale-out benchmark: the text stage on the shard engines, driver and worker memory, engine overhead, planning.

Run: `.venv/bin/python benchmarks/scale_out.py [--copies 6] [--scale 8] [--rounds 3] [--out FILE]`. It measures
- **throughput** of the text stage (`filtered_text`: read by offset, decode, extraction, language ID, rules,
  PII, quality classifier, toxicity, MinHash bands) on the local engine with 1 and 2 worker processes, the same
  drop and shard plan on both sides (only the process count differs); medians over `--rounds`;
- **memory**: the driver's peak RSS (the process that plans, submits and publishes) and the largest worker
  process's peak RSS, at 1x and `--scale`x the drop (2 workers);
- **engine overhead per shard**: an empty shard function over 200 shards, local (2 processes) and ray (a
  local Ray with 2 CPUs; its start-up is timed apart), i.e. what the engine adds per shard besides the work;
- the driver's **planning time** for 10,000 shards (`plan_shards` over a raw_crawl index of 200,000 records:
  the sample drop's real index rows, replicated under distinct WARC names);
- a **projection** of the node-hours of one Common Crawl dump from the measured per-core rate;
- with `--media-only`: the **memory** of deduped_images, transcribed_audio and video_clips (`--media-stages`;
  driver and largest worker peak RSS, CPU s) at 1x (`--media-copies` copies of sample-a's WARC files, of
  video-a's for the video, so later copies are duplicates of the first) and `--scale`x, 2 workers (real Whisper
  tiny.en for the audio; NudeNet keyframe scores and no speech for the video).

Input: the text-stage benchmark's generator (`benchmarks/text_stage.py: make_warc`): the 67 HTTP-200 HTML pages of
`samples/drops`, replicated `--copies` times as near-duplicate mirrors into one gzipped WARC (1x); `--scale`x has
`--scale` times as many copies. Every measured run is its own process. Prints a markdown report.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from text_stage import child_classifier, make_warc

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARDS_PER_DROP = 8  # the 1x drop is cut into about this many shards (the 8x drop into about 8x as many)
CC_DUMP_FILES = 90_000  # one Common Crawl main crawl: ~90,000 WARC files of ~1.1 GB (gzipped) each
CC_DUMP_BYTES = 100e12  # ~100 TB of gzipped WARC
CC_DUMP_PAGES = 2.7e9  # ~2.7 billion HTML responses in one such dump
NODE_CORES = 32


# --- children (each a fresh process) ----------------------------------------------------------------
def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def child_prepare(root: str, copies: str) -> dict:
    """Land a drop of `copies` copies, index it (raw_crawl) and train the quality classifier: the untimed inputs."""
    from mmrecipe.crawl_index import index_drop
    from mmrecipe.storage import Storage

    landing, lake = Storage(f"{root}/landing"), Storage(f"{root}/lake", scratch=f"{root}/tmp")
    docs = make_warc(Path(landing.uri("d1", "pages.warc.gz")), int(copies))
    index_drop(landing, lake, "d1", ["pages.warc.gz"])
    child_classifier(lake.uri(), landing.uri(), "d1")
    return {"docs": docs, "warc_bytes": Path(landing.uri("d1", "pages.warc.gz")).stat().st_size}


def child_text_stage(root: str, workers: str, shard_bytes: str) -> dict:
    """filtered_text[d1] on the local engine with `workers` processes, timed; the driver's and workers' peak RSS."""
    from mmrecipe.engine import LocalEngine
    from mmrecipe.storage import Storage
    from mmrecipe.text.pipeline import TextStageConfig, filter_drop
    from mmrecipe.text.quality_classifier import load_scorer

    landing, lake = Storage(f"{root}/landing"), Storage(f"{root}/lake", scratch=f"{root}/tmp-{workers}")
    scorer = load_scorer(lake)
    config = TextStageConfig(quality_min_score=scorer.info.score_at_percentile(10))
    run_lake = Storage(f"{root}/lake", scratch=f"{root}/tmp-{workers}")
    cpu0 = sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),))
    t0 = time.perf_counter()
    run, _ = filter_drop(
        LocalEngine(int(workers)),
        run_lake,
        landing,
        "d1",
        config,
        scorer,
        int(shard_bytes),
        code_version=f"bench-{time.time_ns()}",
    )  # fmt: skip  (a fresh fingerprint: nothing reused)
    seconds = time.perf_counter() - t0
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return {
        "seconds": seconds,
        "cpu_s": sum(u.ru_utime + u.ru_stime for u in used) - cpu0,  # the driver's and every worker's CPU time
        "docs": run.output.counts.total,
        "kept": run.output.counts.kept,
        "shards": run.shards_total,
        "reused": run.shards_reused,
        "driver_rss_mb": _rss_mb(resource.RUSAGE_SELF),
        "worker_rss_mb": _rss_mb(resource.RUSAGE_CHILDREN),  # the largest worker process that has exited
    }


MEDIA_SOURCES = {"images": "drops/sample-a", "audio": "drops/sample-a", "video": "video_drops/video-a"}


def child_media_prepare(root: str, copies: str, source: str) -> dict:
    """Land `copies` copies of a sample drop's WARC files (under distinct names) as one drop and index it (untimed)."""
    import shutil

    from mmrecipe.crawl_index import index_drop, read_records
    from mmrecipe.storage import Storage

    landing, lake = Storage(f"{root}/landing"), Storage(f"{root}/lake", scratch=f"{root}/tmp")
    Path(landing.uri("d1")).mkdir(parents=True, exist_ok=True)
    names = []
    for c in range(int(copies)):
        for src in sorted((REPO / "samples" / source).glob("*.warc.gz")):
            names.append(f"copy-{c:03d}-{src.name}")
            shutil.copyfile(src, landing.uri("d1", names[-1]))
    index_drop(landing, lake, "d1", names)
    size = sum(Path(landing.uri("d1", n)).stat().st_size for n in names)
    kinds = {k: read_records(lake, "d1", k, columns=["record_id"]).num_rows for k in ("image", "audio", "video")}
    return {"warc_bytes": size, **kinds}


def child_media_stage(root: str, stage: str, workers: str, shard_bytes: str) -> dict:
    """deduped_images, transcribed_audio or video_clips of d1 on the local engine, timed; the driver's and
    workers' peak RSS."""
    from mmrecipe.audio.audio_shards import run_audio_stage
    from mmrecipe.audio.transcribed_audio import AudioStageSettings
    from mmrecipe.audio.transcription import DEFAULT_MODEL_NAME, TranscriberSettings, default_model_dir
    from mmrecipe.engine import LocalEngine
    from mmrecipe.images.stage import run_image_stage
    from mmrecipe.storage import Storage

    lake, engine = Storage(f"{root}/lake", scratch=f"{root}/tmp-{stage}"), LocalEngine(int(workers))
    cpu0, t0 = time.process_time(), time.perf_counter()
    if stage == "images":
        run = run_image_stage(lake, "d1", engine=engine, shard_bytes=int(shard_bytes)).run
    elif stage == "video":
        from mmrecipe.images.image_filters import NsfwScorer
        from mmrecipe.video.stage import run_video_stage

        run = run_video_stage(lake, "d1", scorer=NsfwScorer, engine=engine, shard_bytes=int(shard_bytes)).run
    else:
        asr = TranscriberSettings(model_dir=default_model_dir(), model_name=DEFAULT_MODEL_NAME)
        run = run_audio_stage(engine, lake, "d1", AudioStageSettings(), asr, int(shard_bytes)).run
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_s": time.process_time() - cpu0 + children.ru_utime + children.ru_stime,
        "records": run.output.counts.total,
        "kept": run.output.counts.kept,
        "shards": run.shards_total,
        "driver_rss_mb": _rss_mb(resource.RUSAGE_SELF),
        "worker_rss_mb": _rss_mb(resource.RUSAGE_CHILDREN),
    }


def noop_shard(_: object) -> int:
    """An empty shard function: what remains of a shard's time is the engine's."""
    return 0


def child_overhead(engine: str, shards: str) -> dict:
    """Seconds per shard an engine adds around an empty shard function (Ray's start-up timed apart)."""
    from mmrecipe.engine import LocalEngine, RayEngine, Shard

    plan = [Shard("d1", "html", i, i, i + 1, 1) for i in range(int(shards))]
    startup = 0.0
    if engine == "ray":
        import ray

        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": f"{HERE}:{REPO}"}})  # fmt: skip
        startup = time.perf_counter() - t0
        runner = RayEngine(num_cpus=1)
    else:
        runner = LocalEngine(2)
    runner.run(noop_shard, plan[:4], lambda s, e: 0)  # warm: worker processes up and importing
    t0 = time.perf_counter()
    out = runner.run(noop_shard, plan, lambda s, e: 0)
    seconds = time.perf_counter() - t0
    assert len(out) == len(plan)
    return {"per_shard_ms": 1000 * seconds / len(plan), "startup_s": startup}


def child_planning(root: str, records: str, shards: str) -> dict:
    """Seconds `plan_shards` takes to cut a raw_crawl index of `records` HTML records into about `shards` shards."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from mmrecipe.crawl_index import RAW_CRAWL, read_records
    from mmrecipe.engine import plan_shards
    from mmrecipe.stage_output import StageWriter
    from mmrecipe.storage import Storage
    from mmrecipe.warc_index import INDEX_SCHEMA

    lake = Storage(f"{root}/lake", scratch=f"{root}/tmp")
    real = read_records(lake, "d1", "html")  # the 1x drop's real index rows
    copies = -(-int(records) // real.num_rows)
    big = Storage(f"{root}/plan-lake", scratch=f"{root}/tmp")
    with StageWriter(big, RAW_CRAWL, "big", INDEX_SCHEMA, batch_rows=65_536) as out:
        for k in range(copies):  # copy k of the index points into WARC files named `<name>.<k>`
            path = pc.binary_join_element_wise(real["warc_path"], pa.scalar(f".{k:05d}"), "")
            for row in real.set_column(real.schema.get_field_index("warc_path"), "warc_path", path).to_pylist():
                out.keep(row)
        out.close()
    lengths = read_records(big, "big", "html", ["warc_length"])["warc_length"]
    n, total = len(lengths), int(pc.sum(lengths).as_py())
    target = max(1, total // int(shards))
    t0 = time.perf_counter()
    plan = plan_shards(big, "big", "html", target)
    return {"seconds": time.perf_counter() - t0, "shards": len(plan), "records": n, "target_bytes": target}


CHILDREN = {
    f.__name__: f
    for f in (child_prepare, child_text_stage, child_overhead, child_planning, child_media_prepare, child_media_stage)
}


def run_child(name: str, *args: object) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{HERE}:{REPO}"}
    out = subprocess.run([sys.executable, __file__, "--child", name, *map(str, args)], capture_output=True,
                         text=True, env=env)  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"{name}{args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the report -----------------------------------------------------------------------------------
def media_memory(args: argparse.Namespace, say: Callable[[str], None]) -> None:
    """The `--media-stages` at 1x and `--scale`x (2 workers): driver and worker peak RSS, CPU s."""
    load, stages = os.getloadavg()[0], args.media_stages.split(",")
    sizes, sources = (1, args.scale), sorted({MEDIA_SOURCES[st] for st in stages})
    with tempfile.TemporaryDirectory(prefix="mmrecipe-scale-media-") as tmp:
        root = {(src, n): f"{tmp}/{src.replace('/', '-')}-x{n}" for src in sources for n in sizes}
        drops = {key: run_child("child_media_prepare", path, args.media_copies * key[1], key[0])
                 for key, path in root.items()}  # fmt: skip
        shard_bytes = {src: max(1, drops[(src, 1)]["warc_bytes"] // SHARDS_PER_DROP) for src in sources}
        runs = {(st, n): run_child("child_media_stage", root[(MEDIA_SOURCES[st], n)], st, 2,
                                   shard_bytes[MEDIA_SOURCES[st]])
                for st in stages for n in sizes}  # fmt: skip
    for src in sources:
        one = drops[(src, 1)]
        say(
            f"Media drop {src}: {args.media_copies} copies of its WARC files at 1x ({one['image']} image, "
            f"{one['audio']} audio and {one['video']} video records, {one['warc_bytes'] / 1e6:.1f} MB), "
            f"{args.media_copies * args.scale} at {args.scale}x; shards of {shard_bytes[src] / 1e3:.0f} kB."
        )
    say(f"2 workers; 1-minute load {load:.1f} at the start. Command: `python benchmarks/scale_out.py "
        f"{' '.join(sys.argv[1:])}`.")  # fmt: skip
    say("")
    say(f"| stage, 2 workers | 1x | {args.scale}x | ratio |")
    say("|---|---|---|---|")
    for st in stages:
        small, large = runs[(st, 1)], runs[(st, args.scale)]
        say(f"| {st}: records (shards) | {small['records']} ({small['shards']}) | {large['records']} "
            f"({large['shards']}) | {large['records'] / small['records']:.1f}x |")  # fmt: skip
        for key, label in (("driver_rss_mb", "driver peak RSS"), ("worker_rss_mb", "largest worker's peak RSS")):
            say(f"| {st}: {label} | {small[key]:.0f} MB | {large[key]:.0f} MB | {large[key] / small[key]:.2f}x |")
        say(f"| {st}: CPU s (driver and workers) | {small['cpu_s']:.1f} | {large['cpu_s']:.1f} | "
            f"{large['cpu_s'] / small['cpu_s']:.2f}x |")  # fmt: skip
    say("")
    say("Raw runs: " + json.dumps({f"{st} {n}x": r for (st, n), r in runs.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=6, help="copies of the sample pages in the 1x drop")
    parser.add_argument("--scale", type=int, default=8, help="the larger drop is this many times the 1x drop")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each throughput side (medians quoted)")
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument("--throughput-only", action="store_true",
                        help="measure only the 1- vs 2-worker throughput (and the projection from it)")  # fmt: skip
    parser.add_argument("--media-copies", type=int, default=2, help="copies of a sample drop in the 1x media drop")
    parser.add_argument("--media-only", action="store_true",
                        help="measure only the media stages' memory at 1x and --scale x")  # fmt: skip
    parser.add_argument("--media-stages", default="images,audio,video",
                        help="the media stages --media-only measures (comma-separated)")  # fmt: skip
    args = parser.parse_args()
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    if args.media_only:
        media_memory(args, say)
        if args.out:
            args.out.write_text("\n".join(lines) + "\n")
        return

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mmrecipe-scale-") as tmp:
        one, big = f"{tmp}/x1", f"{tmp}/x{args.scale}"
        p1 = run_child("child_prepare", one, args.copies)
        pn = None if args.throughput_only else run_child("child_prepare", big, args.copies * args.scale)
        shard_bytes = max(1, p1["warc_bytes"] // SHARDS_PER_DROP)

        runs: dict[int, list[dict]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for workers in (1, 2):
                runs[workers].append(run_child("child_text_stage", one, workers, shard_bytes))
        rate = {w: statistics.median(r["docs"] / r["seconds"] for r in rs) for w, rs in runs.items()}
        mem, overhead, planning = {}, {}, {}
        if pn is not None:
            mem = {1: runs[2][-1], args.scale: run_child("child_text_stage", big, 2, shard_bytes)}
            overhead = {e: run_child("child_overhead", e, 200) for e in ("local", "ray")}
            planning = run_child("child_planning", one, 200_000, 10_000)

    docs, seconds1 = p1["docs"], statistics.median(r["cpu_s"] for r in runs[1])  # a core's rate: CPU time
    say(f"# Scale-out benchmark ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores shared, Python "
        f"{sys.version.split()[0]}; 1-minute load average {load:.1f} at the start)")  # fmt: skip
    say()
    say(f"Input: {docs} documents at 1x ({args.copies} copies of the 67 sample pages, {p1['warc_bytes'] / 1e6:.1f} MB "
        f"of gzipped WARC), cut into shards of {shard_bytes / 1e3:.0f} kB ({runs[1][0]['shards']} shards); "
        f"{pn['docs'] if pn else 'no'} documents at {args.scale}x. Command: `python benchmarks/scale_out.py "
        f"{' '.join(sys.argv[1:])}`.")  # fmt: skip
    say()
    say("| measure | 1 worker | 2 workers | ratio |")
    say("|---|---|---|---|")
    label = f"text stage throughput, local engine (median of {args.rounds})"
    say(f"| {label} | {rate[1]:.1f} docs/s | {rate[2]:.1f} docs/s | **{rate[2] / rate[1]:.2f}x** |")
    cpu = {w: statistics.median(r["cpu_s"] for r in rs) for w, rs in runs.items()}
    say(f"| CPU seconds of the driver and its workers (median) | {cpu[1]:.1f} s | {cpu[2]:.1f} s | "
        f"{cpu[1] / cpu[2]:.2f}x |")  # fmt: skip
    say()
    say("Both sides: the same drop, shard plan, stage config and models; only the worker-process count differs.")
    say("Each side's time includes its workers' model loading (language ID, toxicity, quality classifier). With one")
    say("worker the engine runs shards inline in the driver; with two it starts a spawn pool, whose processes")
    say("import the code and load the models once each. On two idle cores the wall-time ratio is bounded by")
    say(f"2 x the CPU ratio = {2 * cpu[1] / cpu[2]:.2f}x; on a loaded machine a second process gets no second core.")
    say()
    if pn is not None:
        say(f"| memory (2 workers) | 1x ({docs} docs) | {args.scale}x ({pn['docs']} docs) | ratio |")
        say("|---|---|---|---|")
        for key, label in (("driver_rss_mb", "driver peak RSS"), ("worker_rss_mb", "largest worker's peak RSS")):
            small, large = mem[1][key], mem[args.scale][key]
            say(f"| {label} | {small:.0f} MB | {large:.0f} MB | {large / small:.2f}x |")
        say()
        say("| engine overhead per shard (empty shard function, 200 shards, 2 workers) | ms/shard | start-up s |")
        say("|---|---|---|")
        for e, o in overhead.items():
            say(f"| {e} | {o['per_shard_ms']:.2f} | {o['startup_s']:.1f} |")
        say()
        say(f"Planning: `plan_shards` cut a raw_crawl index of {planning['records']:,} records into "
            f"{planning['shards']:,} shards in **{planning['seconds']:.2f} s** (driver, one process).")  # fmt: skip
        say()
    per_core_bytes = p1["warc_bytes"] / seconds1
    per_core_docs = docs / seconds1
    by_bytes = CC_DUMP_BYTES / per_core_bytes / 3600
    by_docs = CC_DUMP_PAGES / per_core_docs / 3600
    say(f"Projection for one Common Crawl dump ({CC_DUMP_FILES:,} WARC files, ~{CC_DUMP_BYTES / 1e12:.0f} TB gzipped, "
        f"~{CC_DUMP_PAGES / 1e9:.1f} billion HTML pages), from the 1-worker CPU-time rate of this run "
        f"({per_core_docs:.1f} docs/s/core, {per_core_bytes / 1e6:.2f} MB/s/core of WARC):")  # fmt: skip
    say(
        f"- by pages: {by_docs:,.0f} core-hours = **{by_docs / NODE_CORES:,.0f} node-hours** ({NODE_CORES}-core nodes);"
    )
    say(f"- by WARC bytes: {by_bytes:,.0f} core-hours = **{by_bytes / NODE_CORES:,.0f} node-hours**.")
    say()
    say("Raw runs: " + json.dumps({"text_stage": runs, "memory": mem, "overhead": overhead, "planning": planning}))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(CHILDREN[sys.argv[2]](*sys.argv[3:])))
    else:
        main()
