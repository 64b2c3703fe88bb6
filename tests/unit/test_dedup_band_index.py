"""The persistent band index: exact and near duplicates, cross-partition order independence, idempotence."""

import itertools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import pytest

from mmrecipe.dedup import BandIndex, IndexEntries, MinHashConfig, band_index
from mmrecipe.dedup.band_index import EXACT_DUPLICATE, NEAR_DUPLICATE
from mmrecipe.dedup.bucket_file import write_bucketed_to
from mmrecipe.storage import Storage

DOCS = [t for t in topics.values() if len(t.split()) > 400][:8]


def near_copy(text: str) -> str:
    """The text with a new title line and its last sentence dropped: a typical mirrored page."""
    return "Mirror of the Python documentation\n" + text[: text.rfind(".", 0, len(text) - 200) + 1]


def entries(drop: str, texts: list[str]) -> IndexEntries:
    return IndexEntries.from_texts([f"{drop}-{i}" for i in range(len(texts))], texts)


@pytest.fixture(params=[1, 4, 64], ids=lambda b: f"{b}-buckets")
def index(tmp_path: Path, request: pytest.FixtureRequest) -> BandIndex:
    return BandIndex(Storage(str(tmp_path / "lake")), "filtered_text", buckets=request.param)


DROP_A = [DOCS[0], DOCS[1], DOCS[2], DOCS[3]]
DROP_B = [DOCS[0], near_copy(DOCS[1]), DOCS[4], DOCS[4].upper(), near_copy(DOCS[5]), DOCS[5]]
EXPECTED_B_AFTER_A = [
    # (kept, reason, cluster)
    (False, EXACT_DUPLICATE, "A-0"),
    (False, NEAR_DUPLICATE, "A-1"),
    (True, None, "B-2"),
    (False, EXACT_DUPLICATE, "B-2"),  # same text up to case
    (True, None, "B-4"),
    (False, NEAR_DUPLICATE, "B-4"),  # the earlier record of the drop wins, even if it is the edited copy
]


def decisions_table(index: BandIndex, drop: str) -> list[tuple[bool, str | None, str]]:
    d = index.decide(drop)
    return [(bool(k), r, c) for k, r, c in zip(d.keep, d.reason, d.cluster, strict=True)]


def test_near_copy_really_is_near(index: BandIndex) -> None:
    sig = np.vstack([IndexEntries.from_texts(["x", "y"], [DOCS[1], near_copy(DOCS[1])]).bands])
    assert (sig[0] == sig[1]).sum() >= 1


def test_b_after_a_removes_b_copies(index: BandIndex) -> None:
    index.write("A", entries("A", DROP_A))
    index.write("B", entries("B", DROP_B))
    assert decisions_table(index, "A") == [(True, None, f"A-{i}") for i in range(4)]
    assert decisions_table(index, "B") == EXPECTED_B_AFTER_A
    d = index.decide("B")
    assert d.cluster_partition == ["A", "A", "B", "B", "B", "B"]
    assert d.duplicate_of == ["A-0", "A-1", None, "B-2", None, "B-4"]
    summary = d.summary()
    assert summary.pop("index_bytes_read") > 0
    assert summary == {"kept": 2, EXACT_DUPLICATE: 2, NEAR_DUPLICATE: 2, "cross_partition": 2}
    assert set(d.sources) == {"A", "B"}


def test_b_then_a_reaches_the_same_decisions_after_refresh(index: BandIndex) -> None:
    index.write("B", entries("B", DROP_B))
    early = index.decide("B")
    assert early.keep.tolist() == [True, True, True, False, True, False]  # nothing earlier yet
    assert index.stale_consumers({"B": early.sources}) == {}
    index.write("A", entries("A", DROP_A))
    assert index.stale_consumers({"B": early.sources}) == {"B": "earlier partitions changed: A"}
    assert decisions_table(index, "A") == [(True, None, f"A-{i}") for i in range(4)]
    refreshed = index.decide("B")
    assert decisions_table(index, "B") == EXPECTED_B_AFTER_A
    assert index.stale_consumers({"B": refreshed.sources, "A": index.decide("A").sources}) == {}


def test_rewriting_a_partition_is_idempotent(index: BandIndex) -> None:
    v1 = index.write("A", entries("A", DROP_A))
    index.write("B", entries("B", DROP_B))
    sources = index.decide("B").sources
    before = index.storage.read_bytes(index.uri("A"))
    v2 = index.write("A", entries("A", DROP_A))
    assert v1 == v2 and index.storage.read_bytes(index.uri("A")) == before
    assert index.stale_consumers({"B": sources}) == {}
    index.write("A", entries("A", DROP_A[:2]))  # A changed: B must be decided again
    assert "B" in index.stale_consumers({"B": sources})
    assert decisions_table(index, "B")[1] == (False, NEAR_DUPLICATE, "A-1")


def test_a_chain_resolves_to_the_kept_root(index: BandIndex) -> None:
    """q~r and r~d share different buckets, q and d share none: d's kept copy is q, through r."""
    bands = np.arange(3 * 14, dtype=np.uint64).reshape(3, 14) + np.uint64(1000)
    bands[1, 0] = bands[0, 0]  # r shares band 0 with q
    bands[2, 5] = bands[1, 5]  # d shares band 5 with r
    keys = np.array([1, 2, 3], dtype=np.uint64)
    index.write("A", IndexEntries(["q"], keys[:1], bands[:1], np.ones(1, bool)))
    index.write("B", IndexEntries(["r"], keys[1:2], bands[1:2], np.ones(1, bool)))
    index.write("C", IndexEntries(["d"], keys[2:], bands[2:], np.ones(1, bool)))
    d = index.decide("C")
    assert d.keep.tolist() == [False] and d.reason == [NEAR_DUPLICATE]
    assert d.duplicate_of == ["r"] and d.cluster == ["q"] and d.cluster_partition == ["A"]


def test_documents_without_shingles_only_match_exactly(index: BandIndex) -> None:
    e = IndexEntries.from_texts(["e1", "e2", "t"], ["", "   ", "x"])
    index.write("A", e)
    d = index.decide("A")
    assert d.keep.tolist() == [True, False, True] and d.reason[1] == EXACT_DUPLICATE


def test_errors_say_what_to_do(index: BandIndex, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="materialize filtered_text for 'A' first"):
        index.decide("A")
    index.write("A", entries("A", DROP_A[:1]))
    other = BandIndex(index.storage, "filtered_text", MinHashConfig(num_perm=64, bands=8, rows=8))
    with pytest.raises(ValueError, match="re-materialize partition 'A'"):
        other.decide("A")


def _oracle(parts: dict[str, IndexEntries], partition: str) -> list[tuple[bool, str | None, str, str | None]]:
    """The decisions by definition, over every document in memory: parent = earliest sharer of a key."""
    docs = [(p, i) for p in sorted(parts) if p <= partition for i in range(len(parts[p]))]
    parent, exact = [], []
    for n, (p, i) in enumerate(docs):
        e = parts[p]
        shared = [
            m
            for m, (q, j) in enumerate(docs[:n])
            if parts[q].exact_keys[j] == e.exact_keys[i]
            or (e.has_shingles[i] and parts[q].has_shingles[j] and (parts[q].bands[j] == e.bands[i]).any())
        ]
        parent.append(min(shared, default=n))
        exact.append(any(parts[docs[m][0]].exact_keys[docs[m][1]] == e.exact_keys[i] for m in shared))
    out = []
    for n, (p, _) in enumerate(docs):
        if p != partition:
            continue
        root = n
        while parent[root] != root:
            root = parent[root]
        rid = lambda m: parts[docs[m][0]].record_ids[docs[m][1]]  # noqa: E731
        kept = parent[n] == n
        reason = None if kept else EXACT_DUPLICATE if exact[n] else NEAR_DUPLICATE
        out.append((kept, reason, rid(root), None if kept else rid(parent[n])))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_decisions_equal_the_definition_on_colliding_keys(index: BandIndex, seed: int) -> None:
    """Random documents whose keys collide often (long chains across drops), written in a shuffled order."""
    rng = np.random.default_rng(seed)
    parts = {}
    for d in range(5):
        n = int(rng.integers(0, 12))
        bands = rng.integers(0, 40, size=(n, 14)).astype(np.uint64) + np.arange(14, dtype=np.uint64) * 1000
        parts[f"D{d}"] = IndexEntries(
            [f"D{d}-{i}" for i in range(n)],
            rng.integers(0, 25, size=n).astype(np.uint64),
            bands,
            rng.random(n) > 0.15,
        )
    for p in rng.permutation(sorted(parts)).tolist():
        index.write(p, parts[p])
    for p in sorted(parts):
        d = index.decide(p)
        got = list(zip(d.keep.tolist(), d.reason, d.cluster, d.duplicate_of, strict=True))
        assert got == _oracle(parts, p), p
        assert d.record_ids == parts[p].record_ids and set(d.sources) == {q for q in parts if q <= p}


def test_bucket_tasks_go_through_the_given_map(tmp_path: Path) -> None:
    calls: list[int] = []

    def recording_map(fn, jobs):  # type: ignore[no-untyped-def]
        jobs = list(jobs)
        calls.append(len(jobs))
        return map(fn, jobs)

    index = BandIndex(Storage(str(tmp_path / "lake")), "filtered_text", buckets=4, map_tasks=recording_map)
    index.write("A", entries("A", DROP_A))
    index.write("B", entries("B", DROP_B))
    assert decisions_table(index, "B") == EXPECTED_B_AFTER_A
    assert calls[0] == 4  # one task per bucket of B (6 documents x 15 keys fill all 4)


def test_index_bytes_read_grow_with_the_earlier_drops_read(index: BandIndex) -> None:
    index.write("A", entries("A", DROP_A))
    index.write("B", entries("B", DROP_B))
    alone, after = index.decide("A").index_bytes_read, index.decide("B").index_bytes_read
    assert 0 < alone < after


def test_layouts_never_mix(index: BandIndex) -> None:
    index.write("A", entries("A", DROP_A[:1]))
    index.write("B", entries("B", DROP_B[:1]))
    other = BandIndex(index.storage, "filtered_text", buckets=index.buckets * 2)
    with pytest.raises(ValueError, match=f"has {index.buckets} buckets, this deployment uses {index.buckets * 2}"):
        other.decide("B")
    old = index.storage.uri("filtered_text", "side", "C", "dedup_index.parquet")
    index.storage.write_bytes(old, b"PAR1")
    with pytest.raises(ValueError, match="unbucketed layout of an earlier release: re-materialize filtered_text"):
        index.decide("B")


def test_a_torn_index_is_refused(index: BandIndex) -> None:
    index.write("A", entries("A", DROP_A))
    records = index.storage.read_bytes(index.uri("A"))
    index.write("A", entries("A", DROP_A[:2]))
    index.storage.write_bytes(index.uri("A"), records)  # a crash between the two files of a rewrite
    with pytest.raises(ValueError, match=r"torn .* re-materialize 'A'"):
        index.decide("A")


def test_an_empty_partition_is_decided_and_records_every_earlier_version(index: BandIndex) -> None:
    index.write("A", entries("A", DROP_A))
    index.write("B", IndexEntries.concat([]))
    d = index.decide("B")
    assert d.record_ids == [] and d.keep.tolist() == [] and set(d.sources) == {"A", "B"}
    assert index.stale_consumers({"B": d.sources}) == {}  # not re-run forever for having read nothing


def test_bucket_tasks_run_in_other_processes(tmp_path: Path) -> None:
    """The tasks are self-contained (storage, row groups, footers, queries): an engine can ship them anywhere."""
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("fork")) as pool:
        index = BandIndex(Storage(str(tmp_path / "lake")), "filtered_text", buckets=64, map_tasks=pool.map)
        index.write("A", entries("A", DROP_A))
        index.write("B", entries("B", DROP_B))
        assert decisions_table(index, "B") == EXPECTED_B_AFTER_A


def _shard_parts(storage: Storage, whole: IndexEntries, cuts: list[int], buckets: int) -> tuple[list, list, list]:
    """The records and bucketed keys parts shards would write for the spans between `cuts` (as filter_shard)."""
    records, keys, rows = [], [], []
    for i, (lo, hi) in enumerate(itertools.pairwise(cuts)):
        part = IndexEntries(whole.record_ids[lo:hi], whole.exact_keys[lo:hi], whole.bands[lo:hi],
                            whole.has_shingles[lo:hi])  # fmt: skip
        records.append(storage.uri("shards", f"records-{i}.parquet"))
        keys.append(storage.uri("shards", f"keys-{i}.parquet"))
        storage.write_table(records[-1], part.table())
        with storage.atomic_output(keys[-1]) as out:
            write_bucketed_to(out, part.keys(), buckets, {})
        rows.append(hi - lo)
    return records, keys, rows


@pytest.mark.parametrize("cuts", [[0, 9000], [0, 1, 4096, 4100, 4100, 9000], [0, 3000, 6000, 9000]])
def test_an_index_from_shard_parts_has_the_bytes_of_the_whole(
    tmp_path: Path, cuts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`write_parts` (bucket-range tasks over the shards' parts, records streamed part by part) writes the same
    files and version as the whole drop's entries in one table, for any split (empty shards, row groups
    straddling shards) and any number of bucket-range tasks."""
    rng = np.random.default_rng(7)
    n = cuts[-1]
    whole = IndexEntries([f"D-{i}" for i in range(n)], rng.integers(0, 2000, n).astype(np.uint64),
                         rng.integers(0, 3000, (n, 14)).astype(np.uint64), rng.random(n) > 0.1)  # fmt: skip
    expected = BandIndex(Storage(str(tmp_path / "whole")), "filtered_text", buckets=16)
    version = expected.write("D", whole)
    monkeypatch.setattr(band_index, "TASK_KEYS", 5_000)  # 9000 x 15 keys: more tasks than buckets, so 16
    tasks: list[int] = []
    storage = Storage(str(tmp_path / "parts"))
    index = BandIndex(storage, "filtered_text", buckets=16, map_tasks=lambda fn, jobs: tasks.append(len(jobs)) or
                      list(map(fn, jobs)))  # fmt: skip
    assert index.write_parts("D", *_shard_parts(storage, whole, cuts, 16)) == version
    assert tasks == [16]
    for name in (band_index.RECORDS_FILE, band_index.BUCKETS_FILE):
        assert storage.read_bytes(index.uri("D", name)) == expected.storage.read_bytes(expected.uri("D", name)), name
    assert not storage.list_files(storage.uri("filtered_text", "staging"))  # the pieces are gone
    d = index.decide("D")
    assert d.record_ids == whole.record_ids and d.keep.sum() < n  # colliding keys: duplicates found


def test_a_shard_part_with_another_bucket_count_is_refused(tmp_path: Path) -> None:
    storage = Storage(str(tmp_path / "lake"))
    parts = _shard_parts(storage, entries("A", DROP_A), [0, 4], buckets=8)
    with pytest.raises(ValueError, match=r"keys-0\.parquet has 8 buckets, this deployment uses 16"):
        BandIndex(storage, "filtered_text", buckets=16).write_parts("A", *parts)
