"""The persistent band index: exact and near duplicates, cross-partition order independence, idempotence."""

from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import pytest

from mmrecipe.dedup import BandIndex, IndexEntries, MinHashConfig
from mmrecipe.dedup.band_index import EXACT_DUPLICATE, NEAR_DUPLICATE
from mmrecipe.storage import Storage

DOCS = [t for t in topics.values() if len(t.split()) > 400][:8]


def near_copy(text: str) -> str:
    """The text with a new title line and its last sentence dropped: a typical mirrored page."""
    return "Mirror of the Python documentation\n" + text[: text.rfind(".", 0, len(text) - 200) + 1]


def entries(drop: str, texts: list[str]) -> IndexEntries:
    return IndexEntries.from_texts([f"{drop}-{i}" for i in range(len(texts))], texts)


@pytest.fixture
def index(tmp_path: Path) -> BandIndex:
    return BandIndex(Storage(str(tmp_path / "lake")), "filtered_text")


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
    assert d.summary() == {"kept": 2, EXACT_DUPLICATE: 2, NEAR_DUPLICATE: 2, "cross_partition": 2}
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
