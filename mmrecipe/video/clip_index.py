"""The cross-drop index of video clips: which clips each drop kept, and near-duplicate decisions against it.

The design is the image pHash index's (`mmrecipe.images.phash_index`, whose `decide` and `BandIndex` this
module calls): one entries file per drop, `<lake>/video_clips/side/<drop>/clip_index.parquet`, replaced whole
when the drop re-runs (idempotent); a drop is decided only against the kept clips of drops whose key sorts
before it (order-independent, incremental); the file records the drop's digest and its basis (the digests
of the earlier drops it was decided against), so a drop materialized before an earlier-key drop shows up
in `stale_drops`. A clip's hash is the pHash of its middle keyframe; its exact key is the payload's
SHA-256 with the clip's index (the same bytes cut the same way).

A run never loads the earlier drops' entries in its driver: one task per earlier drop returns only its kept
clips within k of a candidate or with a candidate's byte-hash key (`match_prior`), against which `decide`
gives what it gives against all of them; the drop's entries are staged per publish shard and written by a
task (`write_entries_parts`). The whole prior (`load_prior`) is read only by the kept-clips check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrecipe.dedup.bucket_file import TaskMap
from mmrecipe.images.phash_bands import sha_keys
from mmrecipe.images.phash_index import BandIndex, EntriesJob, PriorKept, read_parts
from mmrecipe.stage_output import SIDE, stage_partitions, stage_prefix
from mmrecipe.storage import PARQUET_OPTIONS, Storage

ASSET = "video_clips"
INDEX_FILE = "clip_index.parquet"
HASH_VERSION = "video-keyframe-phash-v1"
META_DIGEST, META_BASIS, META_K = b"mmrecipe.digest", b"mmrecipe.basis", b"mmrecipe.k"

ENTRY_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("drop", pa.string(), nullable=False),
        pa.field("warc_path", pa.string(), nullable=False),
        pa.field("warc_offset", pa.int64(), nullable=False),
        pa.field("clip_key", pa.string(), nullable=False),  # payload sha256 : clip index
        pa.field("phash", pa.int64(), nullable=False),
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("dedup_cluster", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("hamming", pa.int32()),
    ]
)


def index_uri(storage: Storage, drop: str) -> str:
    """Where one drop's clip index entries live."""
    return storage.uri(stage_prefix(ASSET, drop, SIDE), INDEX_FILE)


def indexed_drops(storage: Storage) -> list[str]:
    """The drops with clip index entries, in key order."""
    return [d for d in stage_partitions(storage, ASSET, SIDE) if storage.exists(index_uri(storage, d))]


def read_meta(storage: Storage, drop: str) -> tuple[str, dict[str, str], int]:
    """A drop's (digest, basis, k)."""
    with storage.open_input(index_uri(storage, drop)) as f:
        meta = pq.read_schema(f).metadata or {}
    return meta.get(META_DIGEST, b"").decode(), json.loads(meta.get(META_BASIS, b"{}")), int(meta.get(META_K, b"-1"))


def current_basis(storage: Storage, drop: str) -> dict[str, str]:
    """The digests of every indexed drop whose key sorts before `drop`."""
    return {d: read_meta(storage, d)[0] for d in indexed_drops(storage) if d < drop}


def _prior(t: pa.Table) -> PriorKept:
    """Kept index entries as the image index's matching arrays."""
    c = t.to_pydict()
    rank = list(zip(c["drop"], c["warc_path"], c["warc_offset"], strict=True))
    return PriorKept(
        c["clip_id"], c["drop"], rank, c["clip_key"], [None] * len(rank), np.asarray(c["phash"], np.int64),
        c["dedup_cluster"],
    )  # fmt: skip


def load_prior(storage: Storage, drop: str) -> tuple[PriorKept, dict[str, str]]:
    """The kept clips of all drops before `drop` (as the image index's matching arrays) and their basis."""
    basis = current_basis(storage, drop)
    tables = [storage.read_table(index_uri(storage, d)).filter(pc.field("kept")) for d in basis]
    return _prior(pa.concat_tables(tables) if tables else ENTRY_SCHEMA.empty_table()), basis


@dataclass(frozen=True)
class PriorJob:
    """The task that finds an earlier drop's kept clips a drop's candidates can match."""

    storage: Storage
    drop: str  # the earlier drop
    phashes: np.ndarray  # the candidates' distinct pHashes (int64)
    byte_keys: np.ndarray  # their distinct byte-hash keys (`sha_keys` of the clip keys)
    k: int
    bands: int


def prior_matches(job: PriorJob) -> pa.Table:
    """The drop's kept entries within Hamming distance k of a candidate, or with one of their byte-hash keys."""
    kept = job.storage.read_table(index_uri(job.storage, job.drop)).filter(pc.field("kept"))
    near = np.zeros(kept.num_rows, bool)
    near[BandIndex(job.phashes, job.k, job.bands).query(kept["phash"].to_numpy())[0]] = True
    near |= np.isin(sha_keys(kept["clip_key"].to_pylist()), job.byte_keys)
    return kept.filter(pa.array(near))


def match_prior(
    storage: Storage, drop: str, phashes: np.ndarray, byte_keys: np.ndarray, k: int, bands: int, map_tasks: TaskMap
) -> tuple[PriorKept, dict[str, str]]:
    """The kept clips of the drops before `drop` that candidates with `phashes`/`byte_keys` can match (one task
    per earlier drop; `decide` against them equals `decide` against all), and the basis."""
    basis = current_basis(storage, drop)
    hashes, keys = np.unique(np.asarray(phashes, np.int64)), np.unique(np.asarray(byte_keys, np.uint64))
    jobs = [PriorJob(storage, d, hashes, keys, k, bands) for d in basis]
    return _prior(pa.concat_tables([ENTRY_SCHEMA.empty_table(), *map_tasks(prior_matches, jobs)])), basis


def kept_digest(entries: pa.Table, k: int) -> str:
    """A hash of a drop's kept clips (ids, keys, hashes) and of the threshold and hash version."""
    kept = entries.filter(pc.field("kept"))
    rows = sorted(zip(*(kept[c].to_pylist() for c in ("clip_id", "clip_key", "phash")), strict=True))
    return hashlib.sha256(json.dumps({"k": k, "hash": HASH_VERSION, "kept": rows}).encode()).hexdigest()


def write_entries(storage: Storage, drop: str, entries: pa.Table, basis: dict[str, str], k: int) -> str:
    """Replace a drop's entries atomically; returns its new digest."""
    digest = kept_digest(entries, k)
    meta = {META_DIGEST: digest.encode(), META_BASIS: json.dumps(basis, sort_keys=True).encode(), META_K: b"%d" % k}
    with storage.atomic_output(index_uri(storage, drop)) as out:
        pq.write_table(entries.cast(ENTRY_SCHEMA).replace_schema_metadata(meta), out, **PARQUET_OPTIONS)
    return digest


def write_entries_parts(job: EntriesJob) -> str:
    """`write_entries` of the parts' rows, in shard order (never in the driver); returns the drop's new digest.
    The clip index is one file: the job's bands and buckets are not used."""
    entries = read_parts(job.storage, job.parts, ENTRY_SCHEMA)
    return write_entries(job.storage, job.drop, entries, job.basis, job.k)


def stale_drops(storage: Storage) -> list[str]:
    """Indexed drops whose basis no longer matches the digests of the drops before them, in key order."""
    metas = {d: read_meta(storage, d) for d in indexed_drops(storage)}
    return [d for d, (_, basis, _) in metas.items() if basis != {e: m[0] for e, m in metas.items() if e < d}]


def kept_conflicts(storage: Storage, drop: str, clip_ids: Sequence[str], phashes: np.ndarray) -> list[str]:
    """Kept clips within the drop's k of each other or of earlier drops' kept clips (empty when none)."""
    if not storage.exists(index_uri(storage, drop)):
        return [f"no clip index for drop {drop}: re-materialize it"]
    _, basis, k = read_meta(storage, drop)
    problems = [] if basis == current_basis(storage, drop) else [f"stale: earlier drops changed since {drop} ran"]
    prior, _ = load_prior(storage, drop)
    qi, si, dist = BandIndex(prior.phash, k).query(phashes)
    problems += [
        f"{clip_ids[q]} ~ {prior.record_id[s]} ({prior.drop[s]}), d={d}" for q, s, d in zip(qi, si, dist, strict=True)
    ]
    ai, bi, dd = BandIndex(phashes, k).query(phashes)
    problems += [f"{clip_ids[a]} ~ {clip_ids[b]}, d={d}" for a, b, d in zip(ai, bi, dd, strict=True) if a < b]
    return problems
