"""64-bit pHashes cut into bands: multi-index hashing in memory, and the band keys the pHash index stores.

Multi-index hashing: the 64 bits are cut into `bands` bands; by the pigeonhole principle two hashes
within Hamming distance k agree within `k // bands` bits on at least one band. In memory (`BandIndex`),
each query probes, per band, every band value within that radius in a sorted array (`searchsorted`)
and verifies candidates with an exact popcount. In the lake, a drop's kept images are stored as keys
(`index_keys`: one per band value, and one per byte hash) bucketed by value; a new drop's `probes`
are made and bucketed the same way in tasks, one per bucket range, and joined there (`join_probes`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrecipe.dedup.bucket_file import bucket_of, part_of
from mmrecipe.storage import Storage

MAX_PROBES = 5000  # per band and query: C(16, <=3) = 697 for k=10..15 with 4 bands
EXACT_BAND = -1  # the key of a byte hash (a 64-bit hash of it); bands 0.. are pHash band values
KEY_SCHEMA = pa.schema([("band", pa.int8()), ("key", pa.uint64()), ("seq", pa.int64()), ("phash", pa.int64())])


def _band_layout(bands: int) -> list[tuple[int, int]]:
    """(shift, width) of each band of a 64-bit hash, most significant band first."""
    widths = [64 // bands + (1 if i < 64 % bands else 0) for i in range(bands)]
    shifts = [64 - sum(widths[: i + 1]) for i in range(bands)]
    return list(zip(shifts, widths, strict=True))


def _flip_masks(width: int, radius: int) -> np.ndarray:
    """Every `width`-bit mask with at most `radius` bits set."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in itertools.combinations(range(width), r)]
    return np.array(masks, dtype=np.uint64)


def probe_radius(k: int, bands: int) -> int:
    """Bits each band value is probed within (`k // bands`); a layout that would probe too much is refused."""
    if not 1 <= bands <= 64:
        raise ValueError(f"bands must be between 1 and 64, got {bands}")
    radius = k // bands
    probes = sum(math.comb(max(w for _, w in _band_layout(bands)), r) for r in range(radius + 1))
    if probes > MAX_PROBES:
        raise ValueError(
            f"k={k} with {bands} bands probes {probes} values per band and query (> {MAX_PROBES}): "
            f"use more bands (about k/2 or 64/log2(index size)), e.g. hash_bands={max(4, k // 2)}"
        )
    return radius


class BandIndex:
    """Multi-index hashing over 64-bit hashes: every stored hash within Hamming distance k of a query."""

    def __init__(self, hashes: np.ndarray, k: int, bands: int = 4) -> None:
        self.hashes = np.asarray(hashes, dtype=np.int64).view(np.uint64)
        self.k, self.layout = k, _band_layout(bands)
        radius = probe_radius(k, bands)
        self._bands: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, np.uint64]] = []
        for shift, width in self.layout:
            mask = np.uint64((1 << width) - 1)
            values = (self.hashes >> np.uint64(shift)) & mask
            order = np.argsort(values, kind="stable")
            self._bands.append((values[order], order, _flip_masks(width, radius), shift, mask))

    def __len__(self) -> int:
        return len(self.hashes)

    def query(self, queries: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query index, stored index, distance) of every pair within distance k, sorted, without repeats."""
        q = np.asarray(queries, dtype=np.int64).view(np.uint64)
        parts = [self._query(q[i : i + chunk], i) for i in range(0, len(q), chunk)] if len(self.hashes) else []
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        return tuple(np.concatenate(cols) for cols in zip(*parts, strict=True))  # type: ignore[return-value]

    def _query(self, q: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(self.hashes)
        pairs = [np.zeros(0, dtype=np.int64)]
        for sorted_values, order, flips, shift, mask in self._bands:
            probes = (((q >> np.uint64(shift)) & mask)[:, None] ^ flips[None, :]).ravel()
            lo = np.searchsorted(sorted_values, probes, side="left")
            counts = np.searchsorted(sorted_values, probes, side="right") - lo
            hit = counts > 0
            lo, counts = lo[hit], counts[hit]
            qi = np.repeat(np.flatnonzero(hit) // len(flips), counts)
            starts = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
            si = order[starts]
            close = np.bitwise_count(q[qi] ^ self.hashes[si]) <= self.k  # verify before de-duplicating
            pairs.append(qi[close] * n + si[close])
        uniq = np.unique(np.sort(np.concatenate(pairs)), sorted=True)
        qi, si = uniq // n, uniq % n
        dist = np.bitwise_count(q[qi] ^ self.hashes[si]).astype(np.int64)
        return qi + first, si, dist


# --- band keys in the lake ----------------------------------------------------------------------
def sha_keys(shas: Sequence[str]) -> np.ndarray:
    """A 64-bit key of each byte hash, to bucket by (the full hashes are compared after the join)."""
    keys = [int.from_bytes(hashlib.blake2b(sha.encode(), digest_size=8).digest(), "little") for sha in shas]
    return np.array(keys, dtype=np.uint64)


def _band_values(hashes: np.ndarray, bands: int) -> list[np.ndarray]:
    u = np.asarray(hashes, dtype=np.int64).view(np.uint64)
    return [(u >> np.uint64(shift)) & np.uint64((1 << width) - 1) for shift, width in _band_layout(bands)]


def index_keys(entries: pa.Table, bands: int) -> pa.Table:
    """(band, key, seq, phash) of a drop's kept images: a byte-hash key and one key per pHash band each."""
    rows = np.flatnonzero(entries["kept"].to_numpy(zero_copy_only=False))
    phash = entries["phash"].to_numpy()[rows]
    keys = [sha_keys(entries["sha256"].take(pa.array(rows, pa.int64())).to_pylist()), *_band_values(phash, bands)]
    return pa.table(
        {
            "band": np.repeat(np.arange(-1, bands, dtype=np.int8), len(rows)),
            "key": np.concatenate(keys).astype(np.uint64),
            "seq": np.tile(rows.astype(np.int64), bands + 1),
            "phash": np.tile(phash, bands + 1),
        },
        schema=KEY_SCHEMA,
    )


def probes(phashes: np.ndarray, byte_keys: np.ndarray, k: int, bands: int) -> pa.Table:
    """(band, key, qhash) of every stored key that can belong to a kept image within k of a query, or with
    one of its byte-hash keys (`sha_keys`; qhash 0: compared in full later)."""
    radius, uniq = probe_radius(k, bands), np.unique(np.asarray(phashes, dtype=np.int64))
    byte_keys = np.unique(np.asarray(byte_keys, dtype=np.uint64))
    parts = [(np.full(len(byte_keys), EXACT_BAND, np.int8), byte_keys, np.zeros(len(byte_keys), np.int64))]
    for band, ((_, width), values) in enumerate(zip(_band_layout(bands), _band_values(uniq, bands), strict=True)):
        flips = _flip_masks(width, radius)
        probed = (values[:, None] ^ flips[None, :]).ravel()
        parts.append((np.full(len(probed), band, np.int8), probed, np.repeat(uniq, len(flips))))
    band, key, qhash = (np.concatenate(c) for c in zip(*parts, strict=True))
    return pa.table({"band": band, "key": key.astype(np.uint64), "qhash": qhash})


@dataclass(frozen=True)
class EarlierKeys:
    """An earlier drop's bucketed keys file, located by its footer (read once, by the driver)."""

    uri: str
    rank: int  # the drop's place in key order
    metadata: pq.FileMetaData
    groups: Mapping[int, int]  # bucket -> row group


@dataclass(frozen=True)
class ProbeJob:
    """Find, in buckets [lo, hi) of every earlier drop, the kept images the candidates can match.

    The task makes the candidates' probes itself (hundreds per image), so the driver holds only their hashes."""

    storage: Storage
    lo: int
    hi: int
    buckets: int
    phashes: np.ndarray  # the candidates' pHashes (int64)
    byte_keys: np.ndarray  # their byte hashes' keys (`sha_keys`, uint64)
    k: int
    bands: int
    sources: tuple[EarlierKeys, ...]


def join_probes(job: ProbeJob) -> tuple[np.ndarray, int]:
    """Global positions of the earlier kept images the probes find (within k, or same byte-hash key), bytes read."""
    probe = probes(job.phashes, job.byte_keys, job.k, job.bands)
    bucket = bucket_of(probe["key"].to_numpy(), probe["band"].to_numpy(), job.buckets)
    mine = (bucket >= job.lo) & (bucket < job.hi)
    probe, found = probe.filter(pa.array(mine)), np.unique(bucket[mine]).tolist()
    parts = [part_of(job.storage, e.uri, e.rank, e.metadata, e.groups, found) for e in job.sources]
    hits, nbytes = [np.zeros(0, np.int64)], 0
    for part in (p for p in parts if p):  # one earlier drop at a time: only the images the probes find stay
        table, n = part.read()
        nbytes += n
        joined = probe.join(table, keys=["band", "key"], join_type="inner", use_threads=False)
        names = ("qhash", "phash", "pos", "band")
        qhash, phash, pos, band = (np.asarray(joined[c].to_numpy(), np.int64) for c in names)
        hits.append(pos[(band == EXACT_BAND) | (np.bitwise_count((qhash ^ phash).view(np.uint64)) <= job.k)])
    return np.unique(np.concatenate(hits)), nbytes
