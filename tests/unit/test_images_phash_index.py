"""The pHash band index: exact multi-index-hashing search, greedy ownership, persistence and staleness."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mmrecipe.images import phash_index
from mmrecipe.images.phash_bands import BandIndex, sha_keys
from mmrecipe.images.phash_index import Candidate, Decision, PriorKept, decide
from mmrecipe.storage import Storage


def _flip(h: int, bits: list[int]) -> int:
    """`h` (signed or unsigned 64-bit) with `bits` flipped, as a signed int64 value."""
    h = int(h) & (2**64 - 1)
    for b in bits:
        h ^= 1 << int(b)
    return h - (1 << 64) if h >= 1 << 63 else h


@pytest.mark.parametrize(("k", "bands"), [(10, 4), (6, 4), (3, 8), (12, 4), (0, 4)])
def test_band_index_finds_exactly_the_pairs_brute_force_finds(k: int, bands: int) -> None:
    rng = np.random.default_rng(7)
    stored = rng.integers(-(2**63), 2**63 - 1, size=3000, dtype=np.int64)
    flips = [int(rng.integers(0, k + 3)) for _ in range(300)]
    near = [_flip(h, list(rng.choice(64, size=n, replace=False))) for h, n in zip(stored[:300], flips, strict=True)]
    queries = np.concatenate(
        [np.array(near, dtype=np.int64), rng.integers(-(2**63), 2**63 - 1, size=200, dtype=np.int64)]
    )
    qi, si, dist = BandIndex(stored, k, bands).query(queries, chunk=128)
    found = set(zip(qi.tolist(), si.tolist(), dist.tolist(), strict=True))
    brute = set()
    for q, h in enumerate(queries):
        d = np.bitwise_count((stored ^ h).view(np.uint64))
        brute |= {(q, int(s), int(d[s])) for s in np.flatnonzero(d <= k)}
    assert found == brute
    assert len(brute) >= sum(n <= k for n in flips) > 50  # the planted neighbours within k are found


def test_band_index_refuses_a_band_layout_that_would_probe_too_much() -> None:
    with pytest.raises(ValueError, match="bands"):
        BandIndex(np.zeros(1, dtype=np.int64), k=12, bands=2)


def test_band_index_on_empty_inputs() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert all(len(a) == 0 for a in BandIndex(empty, 10).query(np.array([1, 2], dtype=np.int64)))
    assert all(len(a) == 0 for a in BandIndex(np.array([1], dtype=np.int64), 10).query(empty))


def _prior(rows: list[tuple[str, str, str, int]]) -> PriorKept:
    """Prior kept images from (record_id, drop, sha256, phash)."""
    table = pa.table(
        {
            "record_id": [r[0] for r in rows],
            "drop": [r[1] for r in rows],
            "warc_path": ["w"] * len(rows),
            "warc_offset": list(range(len(rows))),
            "sha256": [r[2] for r in rows],
            "pixel_sha256": [None] * len(rows),
            "phash": pa.array([r[3] for r in rows], pa.int64()),
            "dedup_cluster": [r[0] for r in rows],
        }
    )
    return PriorKept.from_table(table)


BASE = 0x0F0F_3C3C_5A5A_00FF
FAR = 0x7123_4567_89AB_CDEF  # 30+ bits from BASE


def test_decide_keeps_first_and_drops_exact_and_near_copies_in_rank_order() -> None:
    cands = [
        Candidate("a", "sha-a", BASE),
        Candidate("b", "sha-a", BASE),  # same bytes
        Candidate("c", "sha-c", _flip(BASE, [1, 5, 9])),  # 3 bits away
        Candidate("d", "sha-d", FAR),
        Candidate("e", "sha-e", _flip(BASE, list(range(20, 32)))),  # 12 bits away: not within k=10
    ]
    out = decide(cands, _prior([]), k=10)
    assert [(d.kept, d.reason, d.hamming, d.cluster) for d in out] == [
        (True, None, None, "a"),
        (False, "exact_duplicate", 0, "a"),
        (False, "near_duplicate", 3, "a"),
        (True, None, None, "d"),
        (True, None, None, "e"),
    ]


def test_decide_prefers_earlier_drops_and_the_nearest_kept_image() -> None:
    prior = _prior([("p1", "2024-01", "sha-p1", _flip(BASE, [0, 1, 2, 3])), ("p2", "2024-02", "sha-p2", BASE)])
    cands = [Candidate("x", "sha-x", _flip(BASE, [7])), Candidate("y", "sha-p1", FAR)]
    out = decide(cands, prior, k=10)
    assert (out[0].kept, out[0].reason, out[0].owner, out[0].owner_drop, out[0].hamming) == (
        False,
        "near_duplicate",
        "p2",
        "2024-02",
        1,
    )
    assert (out[1].reason, out[1].owner, out[1].cluster) == ("exact_duplicate", "p1", "p1")


def test_no_two_kept_hashes_are_within_k_even_for_chains() -> None:
    rng = np.random.default_rng(3)
    chain = [BASE]
    for _ in range(40):  # a random walk: neighbours within k, ends far apart
        chain.append(_flip(chain[-1], list(rng.choice(64, size=4, replace=False))))
    cands = [Candidate(f"r{i}", f"s{i}", h) for i, h in enumerate(chain)]
    out = decide(cands, _prior([]), k=10)
    kept = np.array([c.phash for c, d in zip(cands, out, strict=True) if d.kept], dtype=np.int64)
    assert 1 < len(kept) < len(chain)
    pairs = [(a, b) for a in range(len(kept)) for b in range(a + 1, len(kept))]
    assert all(np.bitwise_count((kept[a] ^ kept[b]).view(np.uint64)) > 10 for a, b in pairs)
    assert all(not d.kept and d.hamming <= 10 for d in out if d.reason)


def _entries(drop: str, kept: list[tuple[str, int]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "record_id": rid,
                "drop": drop,
                "warc_path": "w",
                "warc_offset": i,
                "url": None,
                "sha256": f"sha-{rid}",
                "pixel_sha256": None,
                "phash": h,
                "kept": True,
                "dedup_cluster": rid,
                "reason": None,
                "hamming": None,
            }
            for i, (rid, h) in enumerate(kept)
        ],
        schema=phash_index.ENTRY_SCHEMA,
    )


def _match(lake: Storage, drop: str, hashes: list[int], buckets: int = 256) -> phash_index.PriorMatch:
    return phash_index.match_prior(lake, drop, np.array(hashes, np.int64), sha_keys([]), 10, buckets=buckets)


def test_entries_persist_with_basis_and_late_earlier_drops_make_later_ones_stale(tmp_path: Path) -> None:
    lake = Storage(str(tmp_path / "lake"))
    basis_b = _match(lake, "drop-b", [BASE]).basis
    assert basis_b == {}
    phash_index.write_entries(lake, "drop-b", _entries("drop-b", [("b1", BASE)]), basis_b, 10)
    assert phash_index.stale_drops(lake) == []
    match_a = _match(lake, "drop-a", [BASE])  # drop-b sorts after drop-a: not a predecessor
    assert match_a.basis == {} and len(match_a.prior.phash) == 0
    digest_a = phash_index.write_entries(lake, "drop-a", _entries("drop-a", [("a1", BASE)]), match_a.basis, 10)
    assert phash_index.stale_drops(lake) == ["drop-b"]
    match_b = _match(lake, "drop-b", [_flip(BASE, [1, 2])])
    assert match_b.basis == {"drop-a": digest_a} and match_b.prior.record_id == ["a1"]
    assert _match(lake, "drop-b", [FAR]).prior.record_id == []  # only what the candidates can match is read
    assert phash_index.read_meta(lake, "drop-a") == {"digest": digest_a, "basis": {}, "k": 10}
    phash_index.write_entries(lake, "drop-b", _entries("drop-b", []), match_b.basis, 10)
    assert phash_index.stale_drops(lake) == []
    assert phash_index.indexed_drops(lake) == ["drop-a", "drop-b"]
    assert phash_index.kept_conflicts(lake, "drop-b", np.array([_flip(BASE, [3])], np.int64), ["b9"], 10)


def test_audit_kept_finds_conflicts_index_mismatch_staleness_and_missing_index(tmp_path: Path) -> None:
    lake = Storage(str(tmp_path / "lake"))
    assert phash_index.audit_kept(lake, "d1", [], np.zeros(0, np.int64)).missing_index
    phash_index.write_entries(lake, "d1", _entries("d1", [("a1", BASE), ("a2", FAR)]), {}, 10)
    good = phash_index.audit_kept(lake, "d1", ["a1", "a2"], np.array([BASE, FAR], np.int64))
    assert good.passed and good.describe() is None and good.k == 10
    tampered = phash_index.audit_kept(lake, "d1", ["a1", "a2", "x"], np.array([BASE, FAR, _flip(FAR, [4])], np.int64))
    assert not tampered.passed and tampered.index_mismatch == 1 and len(tampered.conflicts) == 1
    phash_index.write_entries(lake, "d0", _entries("d0", [("z1", _flip(BASE, [60]))]), {}, 10)
    late = phash_index.audit_kept(lake, "d1", ["a1", "a2"], np.array([BASE, FAR], np.int64))
    assert late.stale and "re-materialize" in (late.describe() or "")
    assert late.conflicts == ["a1 ~ z1 (d0), d=1"]


def _random_drop(rng: np.random.Generator, drop: str, seeds: np.ndarray) -> list[tuple[str, int, str]]:
    """(record_id, phash, sha256) of images near some of `seeds` (a few bits flipped), some byte copies."""
    out = []
    for i in range(int(rng.integers(5, 30))):
        seed = int(seeds[rng.integers(len(seeds))])
        h = _flip(seed, list(rng.choice(64, size=int(rng.integers(0, 14)), replace=False)))
        sha = f"{int(rng.integers(0, 12)):064x}" if rng.random() < 0.2 else f"{drop}-{i}".encode().hex().ljust(64, "0")
        out.append((f"{drop}-{i}", h, sha))
    return out


def _run_drop(lake: Storage, drop: str, images: list[tuple[str, int, str]], buckets: int) -> list[Decision]:
    cands = [Candidate(r, sha, h) for r, h, sha in images]
    match = phash_index.match_prior(
        lake,
        drop,
        np.array([c.phash for c in cands], np.int64),
        sha_keys([c.sha256 for c in cands]),
        10,
        buckets=buckets,
    )
    out = decide(cands, match.prior, 10)
    edges = phash_index.duplicate_edges(
        np.array([c.phash for c in cands], np.int64), sha_keys([c.sha256 for c in cands]), match.prior, 10
    ).tolist()
    by_edges = dict.fromkeys(range(len(cands)), None) | dict(
        zip(edges, decide([cands[i] for i in edges], match.prior, 10), strict=True)
    )
    assert [d or Decision(True, cands[i].record_id) for i, d in by_edges.items()] == out  # what the stage decides
    assert all(out[i].kept for i in range(len(cands)) if i not in set(edges))
    rows = [
        {"record_id": c.record_id, "drop": drop, "warc_path": "w", "warc_offset": i, "url": None, "sha256": c.sha256,
         "pixel_sha256": None, "phash": c.phash, "kept": d.kept, "dedup_cluster": d.cluster, "reason": d.reason,
         "hamming": d.hamming}
        for i, (c, d) in enumerate(zip(cands, out, strict=True))
    ]  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=phash_index.ENTRY_SCHEMA)
    phash_index.write_entries(lake, drop, table, match.basis, 10, buckets=buckets)
    return out


@pytest.mark.parametrize("buckets", [1, 4, 64])
def test_bucketed_prior_gives_the_decisions_of_the_whole_prior_in_any_drop_order(tmp_path: Path, buckets: int) -> None:
    rng = np.random.default_rng(buckets)
    seeds = rng.integers(-(2**63), 2**63 - 1, size=6, dtype=np.int64)
    drops = {f"d{i}": _random_drop(rng, f"d{i}", seeds) for i in range(4)}
    in_order, shuffled = Storage(str(tmp_path / "a")), Storage(str(tmp_path / "b"))
    whole: list[pa.Table] = []
    for drop, images in drops.items():  # in key order, checked against decide() over every earlier kept image
        prior = PriorKept.from_table(pa.concat_tables(whole)) if whole else _prior([])
        expected = decide([Candidate(r, sha, h) for r, h, sha in images], prior, 10)
        assert _run_drop(in_order, drop, images, buckets) == expected
        kept = in_order.read_table(phash_index.entries_uri(in_order, drop))
        whole.append(kept.filter(pc.field("kept")).select(phash_index.PRIOR_COLUMNS))
    assert sum(not d.kept for d in expected) > 0
    edges = phash_index.duplicate_edges(np.array([h for _, h, _ in images], np.int64),
                                        sha_keys([sha for *_, sha in images]), prior, 10)  # fmt: skip
    assert 0 < len(edges) < len(images)  # both kinds of candidate, in the last drop
    for drop in ["d2", "d0", "d3", "d1"]:  # out of order, then the stale ones again, in key order
        _run_drop(shuffled, drop, drops[drop], buckets)
    while stale := phash_index.stale_drops(shuffled):
        _run_drop(shuffled, stale[0], drops[stale[0]], buckets)
    for drop in drops:
        assert shuffled.read_bytes(phash_index.entries_uri(shuffled, drop)) == in_order.read_bytes(
            phash_index.entries_uri(in_order, drop)
        )
    before = in_order.read_bytes(phash_index.keys_uri(in_order, "d3"))
    _run_drop(in_order, "d3", drops["d3"], buckets)  # idempotent
    assert in_order.read_bytes(phash_index.keys_uri(in_order, "d3")) == before
    assert phash_index.stale_drops(in_order) == []


def test_the_bucket_count_and_layout_are_checked(tmp_path: Path) -> None:
    lake = Storage(str(tmp_path / "lake"))
    phash_index.write_entries(lake, "d0", _entries("d0", [("a1", BASE)]), {}, 10, buckets=4)
    with pytest.raises(ValueError, match=r"has 4 buckets, this deployment uses 64 .*MMRECIPE_DEDUP_BUCKETS"):
        _match(lake, "d1", [BASE], buckets=64)
    assert _match(lake, "d1", [BASE], buckets=4).bytes_read > 0
    lake.delete(phash_index.keys_uri(lake, "d0"))  # what an index written by an earlier release looks like
    with pytest.raises(ValueError, match="unbucketed layout of an earlier release; re-materialize deduped_images"):
        _match(lake, "d1", [BASE], buckets=4)
