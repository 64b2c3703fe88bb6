"""A persistent dedup index in the lake, bucketed by band value, and order-independent duplicate decisions.

Layout: per partition (a drop), a folder `<lake>/<asset>/side/<partition>/dedup_index/` with two files.

* `buckets.parquet`: the partition's *keys*, one row (`band`, `key`, `seq`) per exact key and per LSH
  band hash of every *candidate* document (one that passed every per-document filter); `band` is
  -1 for the exact key of its normalized text. A key lives in one of B buckets by a hash of (band,
  key) (`bucket_file.bucket_of`; B = the deployment's `MMRECIPE_DEDUP_BUCKETS`), and each non-empty
  bucket is one row group, so a bucket of a partition is one ranged read. Documents without shingles
  (empty text) only have their exact key.
* `records.parquet`: per document its record id, its position in the partition (`seq`) and its
  keys, in row groups of `ROW_GROUP_ROWS` documents, so a few documents are a few ranged reads.

Both footers carry the partition's content hash (`version`) and the MinHash parameters, the keys' also B; the
records file is written last and is the commit: a reader that finds the two versions different
refuses the torn index. An index written with another B, or in the unbucketed layout of earlier
releases (`dedup_index.parquet`), is refused with what to re-materialize: layouts never mix.

Decisions. Documents are totally ordered by (partition key, seq): the copy in the earliest drop
key comes first. A document's *parent* is the earliest document that shares its exact key or any
band key with it; following parents leads to a *root*, which has no earlier match and is the kept
copy of the cluster. `decide(p)` computes them from duplicate edges alone:

1. The buckets of p are joined in independent tasks (run through `map_tasks`: a thread pool by
   default, the engine's workers at scale; each task takes a contiguous range of at most
   `ceil(B / max_tasks)` buckets, so one small drop is not hundreds of tiny reads): a task reads its
   buckets of p, then the same buckets of each earlier partition in turn, keeping only the keys p
   shares (`is_in`); it takes each shared key's earliest owner and
   returns, per document of p with an earlier owner, the earliest one (its parent) and the earliest
   exact-key owner.
2. Parents in earlier partitions get their own parents the same way (their keys read from
   `records.parquet`, joined against only the buckets those keys fall in), until every parent
   chain ends at a root. No process ever holds the records of every partition.

Why this gives the three required properties:

* **Incremental.** A partition's entries are a pure function of that partition's own documents.
  Materializing a drop writes only its own files; nothing global is rebuilt.
* **Idempotent.** Re-materializing a drop rewrites its own files with the same bytes and the
  same version, so nothing else changes.
* **Order-independent.** `decide(p)` reads only the files of partitions <= p, whatever order they
  were written in. A consumer records the versions it read (`DedupDecisions.sources`); when an
  earlier partition is written later (or rewritten with different content), `stale_consumers`
  reports every later partition whose recorded versions no longer match, and re-running `decide`
  for those brings the final state to exactly what in-order materialization would give.

Duplicates are decided FineWeb-style: sharing one of 14 buckets of 8 rows is a near-duplicate
(~0.8 Jaccard), without a verification pass.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrecipe.dedup.bucket_file import (
    DEFAULT_BUCKETS,
    DEFAULT_MAX_TASKS,
    ROW_GROUP_ROWS,
    SEQ_BITS,
    BucketPart,
    BucketRange,
    TaskMap,
    bucket_of,
    check_buckets,
    gather_range,
    merge_ranges,
    part_of,
    read_footer,
    read_rows,
    task_of,
    thread_map,
    write_bucketed_to,
)
from mmrecipe.dedup.minhash import MinHashConfig, band_hashes, exact_keys, minhash_signatures
from mmrecipe.stage_output import SIDE, STAGING, committed_parts, is_committed, stage_partitions, stage_prefix
from mmrecipe.storage import PARQUET_OPTIONS, Storage

INDEX_DIR = "dedup_index"
RECORDS_FILE, BUCKETS_FILE = "records.parquet", "buckets.parquet"
UNBUCKETED_FILE = "dedup_index.parquet"  # the layout of releases before the bucketed index: refused
VERSION_KEY = b"mmrecipe.dedup.version"
SOURCES_KEY = b"mmrecipe.dedup_sources"  # in a consumer's output: the index versions its decisions read
PARAMS_KEY = b"mmrecipe.dedup.params"
FINEWEB = MinHashConfig()
EXACT_BAND = -1
EXACT_DUPLICATE = "exact_duplicate"
NEAR_DUPLICATE = "near_duplicate"
KEYS_SCHEMA = pa.schema([("band", pa.int8()), ("key", pa.uint64()), ("seq", pa.int32())])  # buckets.parquet
TASK_KEYS = 1 << 18  # keys a bucket-range task of `write_parts` gathers (~16 MB), at most (if the buckets allow)
JOIN_SCHEMA = pa.schema([("band", pa.int8()), ("key", pa.uint64()), ("pos", pa.int64())])


def _band_columns(bands: int) -> list[str]:
    return [f"band_{b:02d}" for b in range(bands)]


@dataclass
class IndexEntries:
    """The dedup entries of one partition's candidate documents, in the partition's record order."""

    record_ids: list[str]
    exact_keys: np.ndarray  # (n,) uint64
    bands: np.ndarray  # (n, bands) uint64
    has_shingles: np.ndarray  # (n,) bool: False for texts without a single word

    @classmethod
    def from_texts(
        cls, record_ids: Sequence[str], texts: Sequence[str], config: MinHashConfig = FINEWEB
    ) -> IndexEntries:
        """Entries for `texts` (already in record order), computed in one vectorised batch."""
        sig, n_shingles = minhash_signatures(texts, config)
        return cls(list(record_ids), exact_keys(texts), band_hashes(sig, config.bands, config.rows), n_shingles > 0)

    @classmethod
    def concat(cls, parts: Sequence[IndexEntries], bands: int = 14) -> IndexEntries:
        """One partition's entries from consecutive batches."""
        if not parts:
            return cls([], np.zeros(0, np.uint64), np.zeros((0, bands), np.uint64), np.zeros(0, bool))
        return cls(
            [r for p in parts for r in p.record_ids],
            np.concatenate([p.exact_keys for p in parts]),
            np.concatenate([p.bands for p in parts]),
            np.concatenate([p.has_shingles for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.record_ids)

    def table(self) -> pa.Table:
        """The entries as a table (`record_id`, `exact_key`, `has_shingles`, `band_NN`): a shard's records part."""
        columns = {"record_id": pa.array(self.record_ids, pa.string()),
                   "exact_key": pa.array(self.exact_keys.astype(np.uint64)),
                   "has_shingles": pa.array(self.has_shingles.astype(bool))}  # fmt: skip
        bands = _band_columns(self.bands.shape[1])
        return pa.table(columns | {b: pa.array(self.bands[:, i].astype(np.uint64)) for i, b in enumerate(bands)})

    def keys(self) -> pa.Table:
        """The entries' keys (`band`, `key`, `seq` among these entries): a shard's keys part, bucketed on writing."""
        return _keys(np.arange(len(self), dtype=np.int64), self.exact_keys, self.bands, self.has_shingles)


@dataclass
class DedupDecisions:
    """Which of a partition's candidates are kept, and for the others which cluster they belong to."""

    partition: str
    record_ids: list[str]
    keep: np.ndarray  # (n,) bool
    reason: list[str | None]  # exact_duplicate / near_duplicate / None when kept
    cluster: list[str]  # record id of the kept copy (the cluster root); a kept document is its own root
    cluster_partition: list[str]  # partition of the kept copy
    duplicate_of: list[str | None]  # record id of the earliest document this one matched directly
    sources: dict[str, str] = field(default_factory=dict)  # partition -> index version read
    index_bytes_read: int = 0  # Parquet bytes (footers and row groups) the decisions read from the index

    def sources_metadata(self) -> dict[bytes, bytes]:
        """Parquet schema metadata that records, in the consumer's output, which index versions were read."""
        return {SOURCES_KEY: json.dumps(self.sources, sort_keys=True).encode()}

    def summary(self) -> dict[str, int]:
        """Counts of kept documents and of each duplicate reason, and the index bytes read."""
        out = {"kept": int(self.keep.sum())}
        for r in (EXACT_DUPLICATE, NEAR_DUPLICATE):
            out[r] = sum(1 for x in self.reason if x == r)
        out["cross_partition"] = sum(
            1 for k, p in zip(self.keep, self.cluster_partition, strict=True) if not k and p != self.partition
        )
        out["index_bytes_read"] = self.index_bytes_read
        return out


DUPLICATE_SCHEMA = pa.schema(
    [("seq", pa.int64()), ("reason", pa.string()), ("cluster", pa.string()), ("cluster_partition", pa.string()),
     ("duplicate_of", pa.string())]
)  # fmt: skip
DECISION_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("keep", pa.bool_(), nullable=False),
        pa.field("reason", pa.string()),  # exact_duplicate / near_duplicate / null when kept
        pa.field("cluster", pa.string(), nullable=False),  # record id of the kept copy (a kept document: itself)
        pa.field("cluster_partition", pa.string(), nullable=False),
        pa.field("duplicate_of", pa.string()),  # the earliest document it matched directly
    ]
)


@dataclass
class DecisionParts:
    """A partition's decisions written as parts (`DECISION_SCHEMA`, one per span of documents), with counts."""

    partition: str
    parts: list[str]
    counts: dict[str, int]  # kept, exact_duplicate, near_duplicate, cross_partition
    sources: dict[str, str]  # partition -> index version read
    index_bytes_read: int = 0

    def sources_metadata(self) -> dict[bytes, bytes]:
        """Parquet schema metadata that records, in the consumer's output, which index versions were read."""
        return {SOURCES_KEY: json.dumps(self.sources, sort_keys=True).encode()}

    def summary(self) -> dict[str, int]:
        """Counts of kept documents and of each duplicate reason, and the index bytes read."""
        return {**self.counts, "index_bytes_read": self.index_bytes_read}


@dataclass(frozen=True)
class DecisionSpan:
    """A task that writes the decisions of documents [lo, hi) of a partition: kept unless among `duplicates`."""

    storage: Storage
    records: str  # the partition's records file
    metadata: pq.FileMetaData
    partition: str
    lo: int
    hi: int
    duplicates: pa.Table  # DUPLICATE_SCHEMA rows of the span's duplicates
    out: str


def write_decisions(job: DecisionSpan) -> int:
    """Write one span's decisions part (in document order); returns the index bytes read (its record ids)."""
    ids, nbytes = (
        read_rows(job.storage, job.records, job.metadata, range(job.lo, job.hi), ["record_id"])
        if job.hi > job.lo
        else (pa.table({"record_id": pa.array([], pa.string()), "seq": pa.array([], pa.int64())}), 0)
    )
    table = ids.join(job.duplicates, keys="seq", join_type="left outer", use_threads=False).sort_by("seq")
    kept = pc.is_null(table["reason"])
    out = pa.table(
        {
            "record_id": table["record_id"],
            "keep": kept,
            "reason": table["reason"],
            "cluster": pc.coalesce(table["cluster"], table["record_id"]),
            "cluster_partition": pc.coalesce(table["cluster_partition"], pa.scalar(job.partition)),
            "duplicate_of": table["duplicate_of"],
        },
        schema=DECISION_SCHEMA,
    )
    job.storage.write_table(job.out, out)
    return nbytes


# --- one bucket of one partition, and the task that joins a bucket ----------------------------------
@dataclass(frozen=True)
class BucketJob:
    """Find the earliest owner of some documents' keys in some buckets of every partition that can own them."""

    buckets: tuple[int, ...]
    sources: tuple[BucketPart, ...]
    queries: pa.Table | None = None  # (band, key, pos) of the documents whose parents are wanted...
    query_rank: int | None = None  # ...or: every document of this source partition


@dataclass
class BucketEdges:
    """Per queried document with an earlier owner of a key in the buckets: the earliest (`parent`) and the
    earliest owner of its exact key (`exact_parent`, null if none), as global positions."""

    edges: pa.Table  # pos, parent, exact_parent
    bytes_read: int


EDGES_SCHEMA = pa.schema([("pos", pa.int64()), ("parent", pa.int64()), ("exact_parent", pa.int64())])


def _earliest(edges: pa.Table) -> pa.Table:
    """Per document, the earliest parent and exact parent over several edge tables' rows."""
    if not edges.num_rows:
        return EDGES_SCHEMA.empty_table()
    out = edges.group_by("pos", use_threads=False).aggregate([("parent", "min"), ("exact_parent", "min")])
    return out.rename_columns(["pos", "parent", "exact_parent"]).cast(EDGES_SCHEMA)


def join_bucket(job: BucketJob) -> BucketEdges:
    """The duplicate edges of some buckets: each queried document to the earliest owner of its keys."""
    queries, nbytes = job.queries, 0
    if queries is None:  # the new drop's own keys in these buckets
        queries, nbytes = next(p for p in job.sources if p.rank == job.query_rank).read()
    wanted = pc.unique(queries["key"])
    found = []
    for part in job.sources:  # one drop at a time: only the keys the queries share stay in memory
        table, n = (queries, 0) if job.queries is None and part.rank == job.query_rank else part.read()
        found.append(table.filter(pc.is_in(table["key"], value_set=wanted)))
        nbytes += n
    table = pa.concat_tables(found) if found else JOIN_SCHEMA.empty_table()
    owner = table.group_by(["band", "key"], use_threads=False).aggregate([("pos", "min")])
    joined = queries.join(owner, keys=["band", "key"], join_type="inner", use_threads=False)
    joined = joined.filter(pc.less(joined["pos_min"], joined["pos"]))  # an earlier document has the key
    exact = pc.if_else(pc.equal(joined["band"], EXACT_BAND), joined["pos_min"], pa.scalar(None, pa.int64()))
    edges = pa.table({"pos": joined["pos"], "parent": joined["pos_min"], "exact_parent": exact})
    return BucketEdges(_earliest(edges), nbytes)


@dataclass(frozen=True)
class _OpenPartition:
    """A partition as `decide` reads it: its place in key order and its checked footers."""

    partition: str
    rank: int
    version: str
    records: pq.FileMetaData
    keys: pq.FileMetaData
    groups: dict[int, int]  # bucket -> row group of buckets.parquet
    footer_bytes: int


def _keys(ids: np.ndarray, exact: np.ndarray, bands: np.ndarray, shingled: np.ndarray, name: str = "seq") -> pa.Table:
    """(band, key, `name`) rows: every document's exact key, and its band keys if it has shingles."""
    with_bands = np.flatnonzero(shingled)
    n_bands = bands.shape[1]
    band = np.concatenate(
        [np.full(len(ids), EXACT_BAND, np.int8), np.tile(np.arange(n_bands, dtype=np.int8), len(with_bands))]
    )
    key = np.concatenate([np.asarray(exact, np.uint64), np.asarray(bands, np.uint64)[with_bands].ravel()])
    at = np.concatenate([np.asarray(ids, np.int64), np.repeat(np.asarray(ids, np.int64)[with_bands], n_bands)])
    return pa.table({"band": band, "key": key, name: at})


def _inline(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [fn(item) for item in items]


class BandIndex:
    """The dedup index of one asset: per partition, its exact keys and LSH band hashes bucketed by value."""

    def __init__(
        self,
        storage: Storage,
        asset: str,
        config: MinHashConfig = FINEWEB,
        buckets: int = DEFAULT_BUCKETS,
        map_tasks: TaskMap = thread_map,
        max_tasks: int = DEFAULT_MAX_TASKS,
    ) -> None:
        if buckets < 1 or max_tasks < 1:
            raise ValueError(f"the dedup index needs at least 1 bucket and 1 task, got {buckets} and {max_tasks}")
        self.storage, self.asset, self.config, self.buckets = storage, asset, config, buckets
        self.map_tasks, self.tasks = map_tasks, min(max_tasks, buckets)
        self.bands = _band_columns(config.bands)
        self.params = json.dumps(
            {"num_perm": config.num_perm, "ngram": config.ngram, "bands": config.bands, "rows": config.rows,
             "seed": config.seed},
            sort_keys=True,
        )  # fmt: skip

    # --- files ---------------------------------------------------------------------------------
    def uri(self, partition: str, name: str = RECORDS_FILE) -> str:
        """Where one partition's index file lives (the records file, which commits the index, by default)."""
        return self.storage.uri(stage_prefix(self.asset, partition, SIDE), INDEX_DIR, name)

    def partitions(self) -> list[str]:
        """Partitions that have an index, in key order; an index in the unbucketed layout is refused."""
        found = []
        for p in stage_partitions(self.storage, self.asset, SIDE):
            if self.storage.exists(self.uri(p)):
                found.append(p)
            elif self.storage.exists(old := self.storage.uri(stage_prefix(self.asset, p, SIDE), UNBUCKETED_FILE)):
                raise ValueError(
                    f"{old} is a dedup index in the unbucketed layout of an earlier release: re-materialize "
                    f"{self.asset} for partition {p!r} (and every other partition still in that layout)"
                )
        return found

    def schema(self, version: str = "") -> pa.Schema:
        fields = [
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("seq", pa.int64(), nullable=False),
            pa.field("exact_key", pa.uint64(), nullable=False),
            pa.field("has_shingles", pa.bool_(), nullable=False),
            *[pa.field(b, pa.uint64(), nullable=False) for b in self.bands],
        ]
        return pa.schema(fields, metadata=self._footer_meta(version))

    def _footer_meta(self, version: str) -> dict[bytes, bytes]:
        return {VERSION_KEY: version.encode(), PARAMS_KEY: self.params.encode()}

    def write(self, partition: str, entries: IndexEntries) -> str:
        """Replace `partition`'s entries with `entries` (atomically) and return their version.

        The entries are staged as one records part and one keys part, then written as by `write_parts`."""
        folder = self.storage.uri(stage_prefix(self.asset, partition, STAGING), "dedup_entries")
        records, keys = f"{folder}/records.parquet", f"{folder}/keys.parquet"
        with self.storage.atomic_output(records) as out:
            pq.write_table(entries.table(), out, **PARQUET_OPTIONS)
        with self.storage.atomic_output(keys) as out:
            write_bucketed_to(out, entries.keys(), self.buckets, {})
        try:
            return self.write_parts(partition, [records], [keys], [len(entries)])
        finally:
            self.storage.delete_dir(folder)

    def write_parts(self, partition: str, records: Sequence[str], keys: Sequence[str], rows: Sequence[int]) -> str:
        """Replace `partition`'s entries with those of its shards' parts (atomically) and return their version.

        `records[i]` is shard i's entries table (`IndexEntries.table`), `keys[i]` its keys (`IndexEntries.keys`,
        written with `bucket_file.write_bucketed_to`), `rows[i]` its number of entries. The keys file is gathered
        bucket range by bucket range in `map_tasks` (each task reads only its buckets of every shard and holds at
        most `TASK_KEYS` keys while the drop fits in the bucket count; a drop of fewer keys is one range, gathered
        here), then merged one bucket at a time; the records file and the version are streamed row group by row
        group. Nothing holds the whole drop.
        """
        offsets = np.concatenate([[0], np.cumsum(np.asarray(rows, dtype=np.int64))]).tolist()
        version = self._version(records)
        staging = self.storage.uri(stage_prefix(self.asset, partition, STAGING), "dedup_pieces")
        n_tasks = min(self.buckets, max(1, -(-offsets[-1] * (1 + len(self.bands)) // TASK_KEYS)))
        jobs = [
            BucketRange(self.storage, tuple(keys), tuple(offsets[:-1]), self.buckets, t * self.buckets // n_tasks,
                        (t + 1) * self.buckets // n_tasks, f"{staging}/piece-{t:05d}.parquet")
            for t in range(n_tasks)
        ]  # fmt: skip
        try:
            run = self.map_tasks if n_tasks > 1 else _inline  # one task's worth: no tasks to start
            pieces = [p for p in run(gather_range, jobs) if p is not None]
            uri = self.uri(partition, BUCKETS_FILE)
            merge_ranges(self.storage, uri, pieces, KEYS_SCHEMA, self.buckets, self._footer_meta(version))
        finally:
            self.storage.delete_dir(staging)
        schema = self.schema(version)
        records_uri = self.uri(partition)
        with self.storage.atomic_output(records_uri) as out, pq.ParquetWriter(out, schema, **PARQUET_OPTIONS) as w:
            for group in self._record_groups(records):
                w.write_table(group, row_group_size=ROW_GROUP_ROWS)
        return version

    def _batches(self, records: Sequence[str], columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The parts' rows in order, `ROW_GROUP_ROWS` at a time (a part is never read whole)."""
        for uri in records:
            with self.storage.open_input(uri) as f:
                yield from pq.ParquetFile(f).iter_batches(batch_size=ROW_GROUP_ROWS, columns=columns)

    def _version(self, records: Sequence[str]) -> str:
        """The content hash of a partition's entries, streamed part by part, column by column."""
        digest = hashlib.sha256(self.params.encode())
        first = True
        for batch in self._batches(records, ["record_id"]):
            if batch.num_rows:
                digest.update(("" if first else "\n").encode() + "\n".join(batch.column(0).to_pylist()).encode())
                first = False
        for columns in (["exact_key"], self.bands, ["has_shingles"]):
            for batch in self._batches(records, columns):
                values = [batch.column(c).to_numpy(zero_copy_only=False) for c in columns]
                digest.update(np.ascontiguousarray(np.column_stack(values) if len(values) > 1 else values[0]).tobytes())
        return digest.hexdigest()[:32]

    def _record_groups(self, records: Sequence[str]) -> Iterator[pa.Table]:
        """The records file's row groups (`ROW_GROUP_ROWS` documents each), from the parts in order."""
        schema = self.schema()
        pending: list[pa.Table] = []
        held = seq = 0
        for batch in self._batches(records):
            ids = pa.array(np.arange(seq, seq + batch.num_rows, dtype=np.int64))
            pending.append(pa.Table.from_batches([batch]).append_column("seq", ids).select(schema.names).cast(schema))
            held, seq = held + batch.num_rows, seq + batch.num_rows
            while held >= ROW_GROUP_ROWS:
                rows = pa.concat_tables(pending).combine_chunks()
                yield rows.slice(0, ROW_GROUP_ROWS)
                pending, held = [rows.slice(ROW_GROUP_ROWS)], held - ROW_GROUP_ROWS
        if held:
            yield pa.concat_tables(pending).combine_chunks()

    def _footer(self, partition: str, name: str = RECORDS_FILE) -> pq.FileMetaData:
        return read_footer(self.storage, self.uri(partition, name))

    def version(self, partition: str) -> str | None:
        """The version of a partition's entries, or None if it has none."""
        if not self.storage.exists(self.uri(partition)):
            return None
        return (self._footer(partition).metadata or {}).get(VERSION_KEY, b"").decode() or None

    def entries(self, partition: str) -> int:
        """How many documents a partition's index holds (0 if it has none)."""
        return self._footer(partition).num_rows if self.storage.exists(self.uri(partition)) else 0

    def versions(self) -> dict[str, str]:
        """The current version of every partition's entries."""
        return {p: v for p in self.partitions() if (v := self.version(p))}

    def _open(self, partition: str, rank: int) -> _OpenPartition:
        """A partition's two footers, checked: same MinHash parameters, same bucket count, not torn."""
        records, keys = self._footer(partition), self._footer(partition, BUCKETS_FILE)
        meta, key_meta = records.metadata or {}, keys.metadata or {}
        where = f"dedup index of {self.asset} partition {partition!r} ({self.uri(partition)})"
        if meta.get(PARAMS_KEY, b"").decode() != self.params:
            raise ValueError(
                f"{where} was built with {meta.get(PARAMS_KEY)!r}, not {self.params}: "
                f"re-materialize partition {partition!r} of {self.asset} with the current MinHash settings"
            )
        if key_meta.get(VERSION_KEY) != meta.get(VERSION_KEY):
            raise ValueError(f"{where} is torn (its two files differ in version): re-materialize {partition!r}")
        groups = check_buckets(keys, self.buckets, where, f"re-materialize {self.asset} for every partition")
        nbytes = records.serialized_size + keys.serialized_size
        return _OpenPartition(partition, rank, meta[VERSION_KEY].decode(), records, keys, groups, nbytes)

    def _part(self, opened: _OpenPartition, buckets: Sequence[int]) -> BucketPart | None:
        uri = self.uri(opened.partition, BUCKETS_FILE)
        return part_of(self.storage, uri, opened.rank, opened.keys, opened.groups, buckets)

    def _records(self, opened: _OpenPartition, seqs: Sequence[int] | None, columns: list[str]) -> tuple[pa.Table, int]:
        """Some documents of a partition (by seq; None: all), read from the row groups that hold them."""
        return read_rows(self.storage, self.uri(opened.partition), opened.records, seqs, columns)

    # --- decisions -----------------------------------------------------------------------------
    def decide(self, partition: str) -> DedupDecisions:
        """Keep/drop decisions for `partition`'s entries against itself and every earlier partition (in memory:
        for a small partition or a test; a stage writes them per shard with `decide_parts`)."""
        n = self.entries(partition)
        folder = self.storage.uri(stage_prefix(self.asset, partition, STAGING), f"decisions-{uuid.uuid4().hex}")
        try:
            parts = self.decide_parts(partition, [(0, n)], folder)
            table = self.storage.read_table(parts.parts[0])
        finally:
            self.storage.delete_dir(folder)
        cols = table.to_pydict()
        return DedupDecisions(
            partition=partition,
            record_ids=cols["record_id"],
            keep=np.asarray(cols["keep"], dtype=bool),
            reason=cols["reason"],
            cluster=cols["cluster"],
            cluster_partition=cols["cluster_partition"],
            duplicate_of=cols["duplicate_of"],
            sources=parts.sources,
            index_bytes_read=parts.index_bytes_read,
        )

    def decide_parts(self, partition: str, spans: Sequence[tuple[int, int]], folder: str) -> DecisionParts:
        """Write the decisions of `partition`'s documents [lo, hi) of each span as one part under `folder`.

        Only the duplicate edges (and the ids of the documents they name) are held here: the parts are
        written in `map_tasks`, each reading its span's record ids from the records file."""
        if not self.storage.exists(self.uri(partition)):
            raise FileNotFoundError(
                f"no dedup index for partition {partition!r} of {self.asset} ({self.uri(partition)}): "
                f"materialize {self.asset} for {partition!r} first"
            )
        names = [p for p in self.partitions() if p < partition] + [partition]
        opened = [self._open(p, rank) for rank, p in enumerate(names)]
        own = opened[-1]
        nbytes = sum(o.footer_bytes for o in opened)
        present = np.array(sorted(own.groups), dtype=np.int64)
        task = task_of(present, self.buckets, self.tasks)
        jobs = []
        for t in np.unique(task).tolist():
            buckets = present[task == t].tolist()
            sources = tuple(p for o in opened if (p := self._part(o, buckets)))
            jobs.append(BucketJob(tuple(buckets), sources, query_rank=own.rank))
        edges, n = self._join(jobs)
        nbytes += n
        parent = dict(zip(edges["pos"].to_pylist(), edges["parent"].to_pylist(), strict=True))
        exact = {
            p for p, e in zip(edges["pos"].to_pylist(), edges["exact_parent"].to_pylist(), strict=True) if e is not None
        }
        ids: dict[int, str] = {}
        resolved: set[int] = set()
        frontier = sorted({p for p in parent.values() if p >> SEQ_BITS != own.rank})
        while frontier:  # parents in earlier partitions: find their own parents, until every chain has its root
            jobs, n = self._chain_jobs(opened, frontier, ids)
            edges, m = self._join(jobs)
            nbytes += n + m
            parent.update(zip(edges["pos"].to_pylist(), edges["parent"].to_pylist(), strict=True))
            resolved.update(frontier)
            frontier = sorted({parent[f] for f in frontier if f in parent} - resolved)
        duplicates, m = self._duplicates(names, own, ids, parent, exact)
        nbytes += m
        seq = duplicates["seq"].to_numpy()
        jobs = [
            DecisionSpan(self.storage, self.uri(partition), own.records, partition, lo, hi,
                         duplicates.filter(pa.array((seq >= lo) & (seq < hi))), f"{folder}/decisions-{i:05d}.parquet")
            for i, (lo, hi) in enumerate(spans)
        ]  # fmt: skip
        run = self.map_tasks if len(jobs) > 1 else _inline
        nbytes += sum(run(write_decisions, jobs))
        reasons = duplicates["reason"].to_pylist()
        counts = {
            "kept": sum(hi - lo for lo, hi in spans) - len(reasons),
            EXACT_DUPLICATE: reasons.count(EXACT_DUPLICATE),
            NEAR_DUPLICATE: reasons.count(NEAR_DUPLICATE),
            "cross_partition": sum(1 for p in duplicates["cluster_partition"].to_pylist() if p != partition),
        }
        sources = {o.partition: o.version for o in opened}
        return DecisionParts(partition, [j.out for j in jobs], counts, dict(sorted(sources.items())), nbytes)

    def _join(self, jobs: Sequence[BucketJob]) -> tuple[pa.Table, int]:
        """Run bucket jobs through `map_tasks`; the earliest parents over all their edges, and bytes read."""
        results = list(self.map_tasks(join_bucket, jobs))
        edges = pa.concat_tables([r.edges for r in results]) if results else EDGES_SCHEMA.empty_table()
        return _earliest(edges), sum(r.bytes_read for r in results)

    def _chain_jobs(
        self, opened: Sequence[_OpenPartition], frontier: Sequence[int], ids: dict[int, str]
    ) -> tuple[list[BucketJob], int]:
        """Bucket jobs that find the parents of documents of earlier partitions (their ids go into `ids`)."""
        queries, nbytes = [], 0
        pos = np.asarray(frontier, dtype=np.int64)
        for rank in np.unique(pos >> SEQ_BITS).tolist():
            seqs = (pos[(pos >> SEQ_BITS) == rank] - (rank << SEQ_BITS)).tolist()
            table, n = self._records(opened[rank], seqs, ["record_id", "exact_key", "has_shingles", *self.bands])
            nbytes += n
            at = table["seq"].to_numpy() + np.int64(rank << SEQ_BITS)
            ids.update(zip(at.tolist(), table["record_id"].to_pylist(), strict=True))
            bands = np.column_stack([table[b].to_numpy() for b in self.bands]).astype(np.uint64)
            shingled = table["has_shingles"].to_numpy(zero_copy_only=False)
            queries.append(_keys(at, table["exact_key"].to_numpy(), bands, shingled, "pos"))
        keys = pa.concat_tables(queries)
        bucket = bucket_of(keys["key"].to_numpy(), keys["band"].to_numpy(), self.buckets)
        task = task_of(bucket, self.buckets, self.tasks)
        jobs = []
        for t in np.unique(task).tolist():
            q = keys.filter(pa.array(task == t))
            buckets = np.unique(bucket[task == t]).tolist()
            last = int(pc.max(q["pos"]).as_py()) >> SEQ_BITS  # no later partition can own an earlier one's key
            sources = tuple(p for o in opened[: last + 1] if (p := self._part(o, buckets)))
            jobs.append(BucketJob(tuple(buckets), sources, queries=q))
        return jobs, nbytes

    def _duplicates(
        self,
        names: Sequence[str],
        own: _OpenPartition,
        ids: dict[int, str],
        parent: Mapping[int, int],
        exact: set[int],
    ) -> tuple[pa.Table, int]:
        """The partition's duplicates (`DUPLICATE_SCHEMA`, by seq) from the parent edges; the id bytes read."""
        roots: dict[int, int] = {}

        def root(pos: int) -> int:
            path = []
            while pos in parent and pos not in roots:
                path.append(pos)
                pos = parent[pos]
            top = roots.get(pos, pos)
            roots.update(dict.fromkeys(path, top))
            return top

        base = own.rank << SEQ_BITS
        dups = sorted(p for p in parent if p >> SEQ_BITS == own.rank)
        named = {root(p) for p in dups} | {parent[p] for p in dups}
        seqs = sorted(p - base for p in named if p >> SEQ_BITS == own.rank)
        nbytes = 0
        if seqs:  # documents of this partition that others duplicate: their ids
            table, nbytes = self._records(own, seqs, ["record_id"])
            ids.update(zip((base + table["seq"].to_numpy()).tolist(), table["record_id"].to_pylist(), strict=True))
        rows = {
            "seq": [p - base for p in dups],
            "reason": [EXACT_DUPLICATE if p in exact else NEAR_DUPLICATE for p in dups],
            "cluster": [ids[root(p)] for p in dups],
            "cluster_partition": [names[root(p) >> SEQ_BITS] for p in dups],
            "duplicate_of": [ids[parent[p]] for p in dups],
        }
        return pa.table(rows, schema=DUPLICATE_SCHEMA), nbytes

    # --- staleness -----------------------------------------------------------------------------
    def recorded_sources(self, data_uri: str) -> dict[str, str] | None:
        """The index versions a consumer output (written with `sources_metadata`) was decided from."""
        if not self.storage.exists(data_uri):
            return None
        with self.storage.open_input(data_uri) as f:
            meta = pq.read_schema(f).metadata or {}
        return json.loads(meta.get(SOURCES_KEY, b"{}"))

    def stale_outputs(self, consumer_asset: str) -> dict[str, str]:
        """Partitions of `consumer_asset` whose kept data was decided from out-of-date index versions."""
        recorded = {}
        for partition in stage_partitions(self.storage, consumer_asset):
            if not is_committed(self.storage, consumer_asset, partition):
                continue
            sources = self.recorded_sources(committed_parts(self.storage, consumer_asset, partition)[0])
            if sources is not None:
                recorded[partition] = sources
        return self.stale_consumers(recorded)

    def stale_consumers(self, recorded: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
        """Consumers whose recorded earlier-partition versions differ from the index now, with why.

        `recorded` maps a consumer partition to the `sources` its last decision read. Only earlier
        partitions count: a consumer's own entries are refreshed by its own materialization.
        """
        current = self.versions()
        stale: dict[str, str] = {}
        for consumer, seen in sorted(recorded.items()):
            if consumer not in current:
                continue
            now = {p: v for p, v in current.items() if p < consumer}
            before = {p: v for p, v in seen.items() if p < consumer}
            if now != before:
                changed = sorted(p for p in set(now) | set(before) if now.get(p) != before.get(p))
                stale[consumer] = "earlier partitions changed: " + ", ".join(changed)
        return stale
