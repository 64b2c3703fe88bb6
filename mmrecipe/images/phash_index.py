"""The cross-drop pHash index: which images each drop kept, and near-duplicate decisions against it.

Layout in the lake: `<lake>/image_phash_index/<drop>/`, written by that drop's `deduped_images` run
and replaced whole when it re-runs (idempotent), two files:

* `entries.parquet` holds every image of the drop that passed the filters, with its byte hash, pixel
  hash, 64-bit pHash, whether it was kept, and its `dedup_cluster` (the record id of the kept image
  it collapsed into), in row groups of `ROW_GROUP_ROWS` images. Its Parquet metadata records the
  drop's `digest` (a hash of its kept set and of `k`), its `basis` (the digests of the earlier drops
  it was decided against), `k`, the band count and the bucket count. It is written last: the commit.
* `keys.parquet` holds the kept images' keys bucketed by value (`mmrecipe.dedup.bucket_file`): one
  row per band value of each kept pHash, and one per byte hash (a 64-bit hash of it, band -1), each
  with the image's row in `entries.parquet` and its pHash.

**Ownership is by drop key.** A drop is decided only against the kept images of drops whose key
sorts before it, so the copy from the earliest drop key survives; within a drop, images are taken
in (warc_path, warc_offset) order and the earliest survives. Deciding each drop against its
predecessors only makes the result the same as processing all drops in key order, whatever order
they were materialized in: incremental (a new drop reads the earlier drops' kept entries, no global
re-run) and order-independent.

**Stale drops.** If drop A arrives after a later-key drop B was materialized, B was decided without
A's images. B's basis no longer matches the current digests of its predecessors, so `stale_drops`
lists it. The `deduped_images` asset reports stale drops in its metadata and the
`stale_image_drops` sensor re-materializes the earliest one; when that changes B's kept set, the
drops after B become stale in turn and are re-run one by one, in key order. Re-running a drop whose
basis is current changes nothing (byte-identical outputs).

**Matching** (`phash_bands`: multi-index hashing over pHash bands). Against earlier drops, a drop's
probes (and byte-hash keys) are made in independent tasks, one per bucket range, bucketed like the
stored keys and joined against only the matching row groups of earlier drops (`match_prior`); only the
kept images found that way are read from `entries.parquet`, and `decide` against them gives what it
would give against every earlier kept image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrecipe.dedup import bucket_file as bf
from mmrecipe.images.phash_bands import (
    BandIndex,
    EarlierKeys,
    ProbeJob,
    index_keys,
    join_probes,
    probe_radius,
    sha_keys,
)
from mmrecipe.storage import PARQUET_OPTIONS, Storage

INDEX_ASSET = "image_phash_index"
ENTRIES_FILE, KEYS_FILE = "entries.parquet", "keys.parquet"
HASH_VERSION = "phash-dct32-v2"  # v2: box-reduced before Lanczos (stage.analyse_image)
META_DIGEST, META_BASIS, META_K = b"mmrecipe.digest", b"mmrecipe.basis", b"mmrecipe.k"
META_BANDS = b"mmrecipe.hash_bands"
PRIOR_COLUMNS = ["record_id", "drop", "warc_path", "warc_offset", "sha256", "pixel_sha256", "phash", "dedup_cluster"]

ENTRY_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("drop", pa.string(), nullable=False),
        pa.field("warc_path", pa.string(), nullable=False),
        pa.field("warc_offset", pa.int64(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("pixel_sha256", pa.string()),
        pa.field("phash", pa.int64(), nullable=False),  # the uint64 hash's bits as a signed int64
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("dedup_cluster", pa.string(), nullable=False),
        pa.field("reason", pa.string()),  # null when kept
        pa.field("hamming", pa.int32()),  # distance to the cluster's kept image; null when kept
    ]
)


# --- decisions --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """An image that passed the filters: what dedup needs to know about it."""

    record_id: str
    sha256: str
    phash: int  # signed int64 form


@dataclass(frozen=True)
class Decision:
    """Whether a candidate is kept, and which kept image's cluster it belongs to."""

    kept: bool
    cluster: str
    reason: str | None = None  # exact_duplicate or near_duplicate (refined to pixel_duplicate later)
    hamming: int | None = None
    owner: str | None = None  # record id of the kept image it duplicates
    owner_drop: str | None = None


@dataclass
class PriorKept:
    """The kept images of earlier drops, as arrays for matching."""

    record_id: list[str]
    drop: list[str]
    rank: list[tuple[str, str, int]]
    sha256: list[str]
    pixel_sha256: list[str | None]
    phash: np.ndarray
    cluster: list[str]

    @classmethod
    def from_table(cls, table: pa.Table) -> PriorKept:
        cols = table.to_pydict()
        rank = list(zip(cols["drop"], cols["warc_path"], cols["warc_offset"], strict=True))
        return cls(
            cols["record_id"],
            cols["drop"],
            rank,
            cols["sha256"],
            cols["pixel_sha256"],
            np.asarray(cols["phash"], dtype=np.int64),
            cols["dedup_cluster"],
        )


def decide(candidates: Sequence[Candidate], prior: PriorKept, k: int, bands: int = 4) -> list[Decision]:
    """Keep-or-duplicate for each candidate, greedily in the given (rank) order.

    A candidate is a duplicate of a kept image with the same bytes, else of the nearest kept image
    (earliest on ties) within Hamming distance k: first those of earlier drops, then the ones kept
    before it in this drop. Otherwise it is kept and starts its own cluster. No two kept images are
    then within distance k of each other.
    """
    if not candidates:
        return []
    hashes = np.array([c.phash for c in candidates], dtype=np.int64)
    uniq, inverse = np.unique(hashes, return_inverse=True)
    prior_best: dict[int, tuple[int, tuple[str, str, int], int]] = {}  # unique hash -> (d, rank, prior idx)
    qi, si, dist = BandIndex(prior.phash, k, bands).query(uniq)
    for q, s, d in zip(qi.tolist(), si.tolist(), dist.tolist(), strict=True):
        best = prior_best.get(q)
        if best is None or (d, prior.rank[s]) < best[:2]:
            prior_best[q] = (d, prior.rank[s], s)
    neighbours: dict[int, list[tuple[int, int]]] = {}  # unique hash -> [(distance, other unique hash)]
    ai, bi, dd = BandIndex(uniq, k, bands).query(uniq)
    for a, b, d in zip(ai.tolist(), bi.tolist(), dd.tolist(), strict=True):
        neighbours.setdefault(a, []).append((d, b))
    prior_by_sha = {sha: i for i, sha in enumerate(prior.sha256)}
    kept_by_hash: dict[int, int] = {}  # unique hash -> position of the kept candidate with it
    kept_by_sha: dict[str, int] = {}
    out: list[Decision] = []
    for pos, (cand, u) in enumerate(zip(candidates, inverse.tolist(), strict=True)):
        if cand.sha256 in prior_by_sha:
            s = prior_by_sha[cand.sha256]
            out.append(Decision(False, prior.cluster[s], "exact_duplicate", 0, prior.record_id[s], prior.drop[s]))
        elif cand.sha256 in kept_by_sha:
            owner = out[kept_by_sha[cand.sha256]]
            out.append(
                Decision(False, owner.cluster, "exact_duplicate", 0, candidates[kept_by_sha[cand.sha256]].record_id)
            )
        elif u in prior_best:
            d, _, s = prior_best[u]
            out.append(Decision(False, prior.cluster[s], "near_duplicate", d, prior.record_id[s], prior.drop[s]))
        else:
            local = [(d, kept_by_hash[v]) for d, v in neighbours.get(u, []) if v in kept_by_hash]
            if local:
                d, owner_pos = min(local)
                owner = out[owner_pos]
                out.append(Decision(False, owner.cluster, "near_duplicate", d, candidates[owner_pos].record_id))
            else:
                out.append(Decision(True, cand.record_id))
                kept_by_hash[u] = pos
                kept_by_sha[cand.sha256] = pos
    return out


@dataclass(frozen=True)
class Candidates:
    """A drop's dedup candidates as arrays in drop order: what a driver holds (three 64-bit numbers each)."""

    positions: np.ndarray  # int64: an image's drop position (a video clip's: `video_shards.candidate_key`)
    phashes: np.ndarray  # int64
    byte_keys: np.ndarray  # uint64 (`sha_keys`)

    @classmethod
    def take(cls, analysed: Sequence[Any]) -> Candidates:
        """The candidates of pass-1 shard results (with these three arrays), moved out of them."""
        cols = {}
        for name, dtype in (("positions", np.int64), ("phashes", np.int64), ("byte_keys", np.uint64)):
            cols[name] = np.concatenate([np.zeros(0, dtype), *(getattr(a, name) for a in analysed)])
            for a in analysed:
                setattr(a, name, None)
        return cls(**cols)


EDGE_TASK_ROWS = 4096  # candidates one edge task queries (their probes: ~4 kB each)


@dataclass(frozen=True)
class EdgeJob:
    """Which of the candidates [lo, hi) of a drop have a duplicate edge (an engine task; see `duplicate_edges`)."""

    phashes: np.ndarray  # every candidate's pHash (int64), in drop order
    byte_keys: np.ndarray  # every candidate's byte-hash key (`sha_keys`, uint64)
    lo: int
    hi: int
    prior: np.ndarray  # the pHashes of the earlier drops' kept images the drop can match
    prior_keys: np.ndarray  # their byte-hash keys
    k: int
    bands: int


def candidate_edges(job: EdgeJob) -> np.ndarray:
    """The indexes in [lo, hi) of the candidates with a duplicate edge."""
    hashes, keys = job.phashes[job.lo : job.hi], job.byte_keys[job.lo : job.hi]
    uniq, count = np.unique(job.phashes, return_counts=True)
    near = count[np.searchsorted(uniq, hashes)] > 1
    a, b, _ = BandIndex(uniq, job.k, job.bands).query(hashes)
    near[a[uniq[b] != hashes[a]]] = True
    near[BandIndex(job.prior, job.k, job.bands).query(hashes)[0]] = True
    unique_keys, key_count = np.unique(job.byte_keys, return_counts=True)
    near |= (key_count[np.searchsorted(unique_keys, keys)] > 1) | np.isin(keys, job.prior_keys)
    return np.flatnonzero(near) + job.lo


def duplicate_edges(
    phashes: np.ndarray,
    byte_keys: np.ndarray,
    prior: PriorKept,
    k: int,
    bands: int = 4,
    map_tasks: bf.TaskMap = map,
) -> np.ndarray:
    """The indexes of the candidates with a duplicate edge: the same bytes (`sha_keys`) as another candidate or
    an earlier drop's kept image, or a pHash within k of one. The others are kept whatever the rest are, and
    change no one's decision: `decide` over the candidates with an edge gives the decisions they get in `decide`
    over all. Found in `map_tasks` tasks of `EDGE_TASK_ROWS` candidates."""
    prior_keys = sha_keys(prior.sha256)
    jobs = [EdgeJob(phashes, byte_keys, lo, min(lo + EDGE_TASK_ROWS, len(phashes)), prior.phash, prior_keys, k, bands)
            for lo in range(0, len(phashes), EDGE_TASK_ROWS)]  # fmt: skip
    return np.concatenate([np.zeros(0, np.int64), *map_tasks(candidate_edges, jobs)])


# --- persistence --------------------------------------------------------------------------------
def entries_uri(storage: Storage, drop: str) -> str:
    """Where one drop's index entries live."""
    return storage.uri(INDEX_ASSET, drop, ENTRIES_FILE)


def indexed_drops(storage: Storage) -> list[str]:
    """The drops that have index entries, in key order."""
    return [d for d in storage.list_dirs(storage.uri(INDEX_ASSET)) if storage.exists(entries_uri(storage, d))]


def kept_digest(entries: pa.Table, k: int) -> str:
    """A hash of a drop's kept set (ids, byte/pixel/perceptual hashes) and of the threshold it used."""
    kept = entries.filter(pc.field("kept"))
    rows = sorted(
        zip(
            kept["record_id"].to_pylist(),
            kept["sha256"].to_pylist(),
            kept["pixel_sha256"].to_pylist(),
            kept["phash"].to_pylist(),
            strict=True,
        )
    )
    payload = json.dumps({"k": k, "hash": HASH_VERSION, "kept": rows}, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def read_meta(storage: Storage, drop: str) -> dict[str, object]:
    """A drop's index metadata: digest, basis (earlier drop -> digest) and k."""
    with storage.open_input(entries_uri(storage, drop)) as f:
        meta = pq.read_schema(f).metadata or {}
    return {
        "digest": meta.get(META_DIGEST, b"").decode(),
        "basis": json.loads(meta.get(META_BASIS, b"{}")),
        "k": int(meta.get(META_K, b"-1")),
    }


def current_basis(storage: Storage, drop: str) -> dict[str, str]:
    """The digests of every indexed drop whose key sorts before `drop`."""
    return {d: str(read_meta(storage, d)["digest"]) for d in indexed_drops(storage) if d < drop}


def keys_uri(storage: Storage, drop: str) -> str:
    """Where one drop's bucketed keys live."""
    return storage.uri(INDEX_ASSET, drop, KEYS_FILE)


def _footers(storage: Storage, drop: str) -> tuple[pq.FileMetaData, pq.FileMetaData]:
    """The footers of a drop's entries and keys; an index of the unbucketed layout is refused."""
    if not storage.exists(keys_uri(storage, drop)):
        raise ValueError(
            f"the pHash index of drop {drop!r} ({entries_uri(storage, drop)}) has no {KEYS_FILE}: it is in the "
            f"unbucketed layout of an earlier release; re-materialize deduped_images for {drop!r}"
        )
    return bf.read_footer(storage, entries_uri(storage, drop)), bf.read_footer(storage, keys_uri(storage, drop))


@dataclass
class PriorMatch:
    """The kept images of earlier drops that the candidates can match, the basis, and the index bytes read."""

    prior: PriorKept
    basis: dict[str, str] = field(default_factory=dict)
    bytes_read: int = 0


def match_prior(
    storage: Storage,
    drop: str,
    phashes: np.ndarray,
    byte_keys: np.ndarray,
    k: int,
    *,
    bands: int = 4,
    buckets: int = bf.DEFAULT_BUCKETS,
    map_tasks: bf.TaskMap = bf.thread_map,
    max_tasks: int = bf.DEFAULT_MAX_TASKS,
) -> PriorMatch:
    """Every kept image of the drops before `drop` within Hamming distance k of one of `phashes` or whose byte
    hash has one of the keys `byte_keys` (`sha_keys`), found bucket by bucket; `decide` against it equals
    `decide` against all of them."""
    probe_radius(k, bands)  # a layout that would probe too much is refused here, before any task
    earlier = [d for d in indexed_drops(storage) if d < drop]
    footers = [_footers(storage, d) for d in earlier]
    nbytes = sum(e.serialized_size + f.serialized_size for e, f in footers)
    groups = []
    for d, (entries, keys) in zip(earlier, footers, strict=True):
        meta, key_meta, where = entries.metadata or {}, keys.metadata or {}, f"the pHash index of drop {d!r}"
        fix = "re-materialize deduped_images for every drop"
        if int(meta.get(META_BANDS, b"0")) != bands:
            raise ValueError(f"{where} has {int(meta.get(META_BANDS, b'0'))} hash bands, this run uses {bands}: {fix}")
        if key_meta.get(META_DIGEST) != meta.get(META_DIGEST):
            raise ValueError(f"{where} is torn (its two files differ in digest): re-materialize {d!r}")
        groups.append(bf.check_buckets(keys, buckets, where, fix))
    sources = tuple(
        EarlierKeys(keys_uri(storage, d), r, f[1], groups[r])
        for r, (d, f) in enumerate(zip(earlier, footers, strict=True))
    )
    task = bf.task_of(np.arange(buckets), buckets, max_tasks)
    hashes, byte_hashes = np.unique(np.asarray(phashes, dtype=np.int64)), np.unique(np.asarray(byte_keys, np.uint64))
    jobs = [
        ProbeJob(storage, int(np.argmax(task == t)), int(buckets - np.argmax(task[::-1] == t)), buckets, hashes,
                 byte_hashes, k, bands, sources)
        for t in (np.unique(task).tolist() if earlier else [])
    ]  # fmt: skip
    results = list(map_tasks(join_probes, jobs))
    pos = np.unique(np.concatenate([p for p, _ in results] or [np.zeros(0, np.int64)]))
    nbytes += sum(n for _, n in results)
    tables = [ENTRY_SCHEMA.empty_table().select(PRIOR_COLUMNS)]
    for rank in np.unique(pos >> bf.SEQ_BITS).tolist():
        rows = (pos[(pos >> bf.SEQ_BITS) == rank] - (rank << bf.SEQ_BITS)).tolist()
        table, n = bf.read_rows(storage, entries_uri(storage, earlier[rank]), footers[rank][0], rows, PRIOR_COLUMNS)
        tables.append(table.select(PRIOR_COLUMNS))
        nbytes += n
    basis = {d: (e.metadata or {}).get(META_DIGEST, b"").decode() for d, (e, _) in zip(earlier, footers, strict=True)}
    return PriorMatch(PriorKept.from_table(pa.concat_tables(tables)), basis, nbytes)


def write_entries(
    storage: Storage,
    drop: str,
    entries: pa.Table,
    basis: dict[str, str],
    k: int,
    bands: int = 4,
    buckets: int = bf.DEFAULT_BUCKETS,
) -> str:
    """Replace a drop's index entries and bucketed keys (atomically, entries last); returns its new digest."""
    digest = kept_digest(entries, k)
    meta = {
        META_DIGEST: digest.encode(),
        META_BASIS: json.dumps(basis, sort_keys=True).encode(),
        META_K: str(k).encode(),
        META_BANDS: str(bands).encode(),
    }
    table = entries.cast(ENTRY_SCHEMA).replace_schema_metadata(meta)
    keys = index_keys(table, bands)
    bf.write_bucketed(storage, keys_uri(storage, drop), keys, buckets, {META_DIGEST: digest.encode()})
    with storage.atomic_output(entries_uri(storage, drop)) as out:
        pq.write_table(table, out, row_group_size=bf.ROW_GROUP_ROWS, **PARQUET_OPTIONS)
    return digest


@dataclass(frozen=True)
class EntriesJob:
    """The task that writes a drop's index from the entries parts its publish shards staged, in shard order."""

    storage: Storage
    drop: str
    parts: tuple[str, ...]
    basis: dict[str, str]
    k: int
    bands: int
    buckets: int


def read_parts(storage: Storage, parts: Sequence[str], schema: pa.Schema) -> pa.Table:
    """The rows of staged entries parts, in order, as one table."""
    return pa.concat_tables([schema.empty_table(), *(storage.read_table(uri) for uri in parts)]).combine_chunks()


def write_entries_parts(job: EntriesJob) -> str:
    """`write_entries` of the parts' rows (never in the driver); returns the drop's new digest."""
    entries = read_parts(job.storage, job.parts, ENTRY_SCHEMA)
    return write_entries(job.storage, job.drop, entries, job.basis, job.k, job.bands, job.buckets)


def stale_drops(storage: Storage) -> list[str]:
    """Indexed drops, in key order, whose basis no longer matches the digests of the drops before them."""
    metas = {d: read_meta(storage, d) for d in indexed_drops(storage)}
    stale = []
    for drop, meta in metas.items():
        expected = {d: m["digest"] for d, m in metas.items() if d < drop}
        if meta["basis"] != expected:
            stale.append(drop)
    return stale


def kept_conflicts(storage: Storage, drop: str, phashes: np.ndarray, record_ids: Sequence[str], k: int) -> list[str]:
    """Pairs within distance k among a drop's kept images and against the kept images of earlier drops
    (with the band and bucket layout of the drop's own index)."""
    entries_meta, keys_meta = _footers(storage, drop)
    bands = int((entries_meta.metadata or {}).get(META_BANDS, b"0"))
    buckets = int((keys_meta.metadata or {}).get(bf.BUCKETS_KEY, b"0"))
    prior = match_prior(storage, drop, phashes, np.zeros(0, np.uint64), k, bands=bands, buckets=buckets).prior
    problems = []
    qi, si, dist = BandIndex(prior.phash, k, bands).query(phashes)
    problems += [
        f"{record_ids[q]} ~ {prior.record_id[s]} ({prior.drop[s]}), d={d}" for q, s, d in zip(qi, si, dist, strict=True)
    ]
    ai, bi, dd = BandIndex(phashes, k, bands).query(phashes)
    problems += [f"{record_ids[a]} ~ {record_ids[b]}, d={d}" for a, b, d in zip(ai, bi, dd, strict=True) if a < b]
    return problems


@dataclass
class KeptAudit:
    """What the no-near-duplicates check found for one drop's kept images."""

    k: int
    conflicts: list[str]
    stale: bool
    index_mismatch: int  # kept ids in the kept data but not kept in the index, or the other way round
    missing_index: bool = False

    @property
    def passed(self) -> bool:
        return not (self.conflicts or self.stale or self.index_mismatch or self.missing_index)

    def describe(self) -> str | None:
        if self.missing_index:
            return "no pHash index entries for this drop: re-materialize it"
        if self.stale:
            return "earlier drops changed since this drop was deduplicated: re-materialize it"
        if self.index_mismatch:
            return f"{self.index_mismatch} kept images differ between the kept data and the index: re-materialize it"
        if self.conflicts:
            return f"{len(self.conflicts)} pairs of kept images within Hamming distance {self.k}"
        return None


def audit_kept(storage: Storage, drop: str, record_ids: Sequence[str], phashes: np.ndarray) -> KeptAudit:
    """Check a drop's kept images: no pair within its k, index agrees, decided against the current basis."""
    if not storage.exists(entries_uri(storage, drop)):
        return KeptAudit(-1, [], False, 0, missing_index=True)
    meta = read_meta(storage, drop)
    k = int(meta["k"])  # type: ignore[call-overload]
    entries = storage.read_table(entries_uri(storage, drop), ["record_id", "kept"]).filter(pc.field("kept"))
    mismatch = len(set(entries["record_id"].to_pylist()) ^ set(record_ids))
    stale = meta["basis"] != current_basis(storage, drop)
    return KeptAudit(k, kept_conflicts(storage, drop, phashes, record_ids, k), stale, mismatch)
