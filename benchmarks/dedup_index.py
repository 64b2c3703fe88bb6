"""Benchmark of the cross-drop text dedup index: the cost of deciding the 11th drop after 10 earlier ones vs the 1st.

Run: `.venv/bin/python benchmarks/dedup_index.py [--docs 2000] [--drops 11] [--rounds 3] [--buckets 256]`.

Input: documents made of real paragraphs, from the sample drops' 67 HTML pages (resiliparse's main-content
text) and the Python Language Reference topics that ship with Python (`pydoc_data`). Each document is 4-12
paragraphs drawn at random (seeded) from that pool, so documents differ the way pages of one site do: shared
paragraphs, different wholes. Each drop has `--docs` documents: 70% new, 20% near-duplicate variants (one
paragraph dropped, a mirror line added) and 10% exact copies of documents of earlier drops (of the same drop
for the 1st). MinHash entries are computed once (`IndexEntries.from_texts`); their time is quoted as what a
drop costs before dedup.

For each layout the drops are written in key order, then, `--rounds` times each, the 1st drop and the last
drop are decided; the medians of wall time, CPU time (the process's, all threads) and index bytes read are
reported:
- new: the bucketed index (`mmrecipe.dedup.BandIndex`, `--buckets` buckets, the default thread pool);
- old: the unbucketed index of the previous release (one file per drop, every earlier drop read whole, once per
  transitive round), loaded from git (`--old-ref`, default the commit before the bucketed index) and timed on
  the same entries; its bytes read are the sizes of the files it read.
Both give the same decisions: the benchmark checks it.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from datatrove_env import sample_pages  # noqa: E402

from mmrecipe.dedup import BandIndex, IndexEntries  # noqa: E402
from mmrecipe.dedup.bucket_file import DEFAULT_MAX_TASKS  # noqa: E402
from mmrecipe.storage import Storage  # noqa: E402

OLD_REF = "08c3e0f"  # main before the bucketed index


def paragraphs() -> list[str]:
    """Real paragraphs of at least 20 words: the sample pages' main text and the Language Reference topics."""
    from pydoc_data.topics import topics

    from resiliparse.extract.html2text import extract_plain_text

    texts = [extract_plain_text(body.decode("utf-8", "replace"), main_content=True) for _, _, body in sample_pages()]
    texts += list(topics.values())
    out = [p.strip() for t in texts for p in t.split("\n\n") if len(p.split()) >= 20]
    return sorted(set(out))


def make_drops(pool: list[str], drops: int, docs: int, seed: int = 0) -> list[list[str]]:
    """`drops` lists of `docs` documents: new ones, near-duplicate variants and exact copies of earlier ones."""
    rng = random.Random(seed)
    out: list[list[str]] = []
    seen: list[str] = []
    for d in range(drops):
        texts: list[str] = []
        for i in range(docs):
            earlier = seen or texts
            roll = rng.random()
            if roll < 0.1 and earlier:
                texts.append(rng.choice(earlier))
            elif roll < 0.3 and earlier:
                paras = rng.choice(earlier).split("\n\n")
                if len(paras) > 2:
                    paras.pop(rng.randrange(len(paras)))
                texts.append("\n\n".join([*paras, f"Mirror {d}-{i} of this page."]))
            else:
                texts.append("\n\n".join(rng.sample(pool, rng.randint(4, 12))))
        seen += texts
        out.append(texts)
    return out


def load_old_index(ref: str) -> Any:
    """The previous release's band_index module, from git."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:mmrecipe/dedup/band_index.py"], check=True, capture_output=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_band_index.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("old_band_index", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["old_band_index"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class CountingStorage(Storage):
    """A Storage that adds up the size of every Parquet file read whole (what the old layout reads)."""

    bytes_read = 0

    def read_table(self, uri: str, columns: list[str] | None = None) -> Any:
        CountingStorage.bytes_read += self.size(uri)
        return super().read_table(uri, columns)


def timed(decide: Any, partition: str, rounds: int) -> tuple[float, float, Any]:
    walls, cpus, result = [], [], None
    for _ in range(rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        result = decide(partition)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--drops", type=int, default=11)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--buckets", type=int, default=256)
    parser.add_argument("--max-tasks", type=int, default=DEFAULT_MAX_TASKS)
    parser.add_argument("--old-ref", default=OLD_REF)
    args = parser.parse_args()

    pool = paragraphs()
    drops = make_drops(pool, args.drops, args.docs)
    names = [f"2026-{i + 1:02d}" for i in range(args.drops)]
    t0 = time.process_time()
    entries = [
        IndexEntries.from_texts([f"{n}-{i}" for i in range(len(t))], t) for n, t in zip(names, drops, strict=True)
    ]
    minhash_s = (time.process_time() - t0) / args.drops
    print(f"{len(pool)} paragraphs; {args.drops} drops x {args.docs} documents; MinHash {minhash_s:.2f} CPU s/drop")
    print(f"new layout: {args.buckets} buckets joined in at most {args.max_tasks} tasks (4 threads)")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        new = BandIndex(Storage(f"{tmp}/new"), "filtered_text", buckets=args.buckets, max_tasks=args.max_tasks)
        old = load_old_index(args.old_ref).BandIndex(CountingStorage(f"{tmp}/old"), "filtered_text")
        for name, e in zip(names, entries, strict=True):
            new.write(name, e)
            old.write(name, e)
        for label, index in (("new (bucketed)", new), ("old (unbucketed)", old)):
            for which in (names[0], names[-1]):
                CountingStorage.bytes_read = 0
                wall, cpu, d = timed(index.decide, which, args.rounds)
                nbytes = getattr(d, "index_bytes_read", 0) or CountingStorage.bytes_read // args.rounds
                rows.append((label, which, wall, cpu, nbytes, d))
    first_new, last_new, first_old, last_old = (r[5] for r in rows)
    for a, b in ((first_new, first_old), (last_new, last_old)):
        same = (a.keep.tolist(), a.reason, a.cluster, a.duplicate_of) == (
            b.keep.tolist(),
            b.reason,
            b.cluster,
            b.duplicate_of,
        )
        assert same, f"the layouts disagree on {a.partition}"
    print(f"decisions identical in both layouts; the last drop keeps {int(last_new.keep.sum())} of {args.docs}")
    print()
    print("| layout | drop decided | earlier drops | wall s | CPU s | index bytes read |")
    print("|---|---|---|---|---|---|")
    for label, which, wall, cpu, nbytes, _ in rows:
        print(f"| {label} | {which} | {names.index(which)} | {wall:.3f} | {cpu:.3f} | {nbytes:,} |")
    print()
    for label, (a, b) in (("new", rows[0:2]), ("old", rows[2:4])):
        print(
            f"{label}: last/first = {b[2] / a[2]:.2f}x wall, {b[3] / a[3]:.2f}x CPU, {b[4] / a[4]:.1f}x bytes; "
            f"first drop's whole cost (MinHash + decide) vs the last's: "
            f"{(minhash_s + b[3]) / (minhash_s + a[3]):.2f}x CPU"
        )


if __name__ == "__main__":
    main()
