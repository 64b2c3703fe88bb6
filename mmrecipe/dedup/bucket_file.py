"""A Parquet file of one drop's dedup keys, bucketed by key value: one row group per non-empty bucket.

Both cross-drop indexes (text MinHash bands in `band_index.py`, image pHash bands in
`images/phash_index.py`) store a drop's keys this way, so that joining a new drop's keys is done
bucket by bucket against only the matching row groups of earlier drops: one ranged read per drop
and task, never a whole file. The footer names the bucket of each row group and the bucket count,
so a reader refuses a file written with another count instead of mixing layouts. A drop's other
columns live in a companion file with fixed-size row groups (`read_rows`), so the few rows a join
needs are a few ranged reads too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrecipe.storage import Storage

DEFAULT_BUCKETS = 256
DEFAULT_MAX_TASKS = 4  # as many as the default thread pool runs at once; an engine passes its own
ROW_GROUP_ROWS = 4096  # row groups of a companion file: a lookup of a few rows reads a few of them
BUCKETS_KEY = b"mmrecipe.index.buckets"
GROUPS_KEY = b"mmrecipe.index.bucket_row_groups"  # bucket of each row group, in file order
_KEY_OPTIONS: dict[str, Any] = {"compression": "none", "use_dictionary": False, "write_statistics": False}
SEQ_BITS = 40  # a key's global position: drop rank << SEQ_BITS | row within the drop
_PHI = np.uint64(0x9E3779B97F4A7C15)
TaskMap = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


def thread_map(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    """`map` over a small thread pool: the default runner of bucket tasks (pyarrow releases the GIL)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(fn, items))


def bucket_of(keys: np.ndarray, bands: np.ndarray, buckets: int) -> np.ndarray:
    """The bucket of each (band, key value): a multiplicative hash of both, so small values spread too."""
    mixed = (np.asarray(keys, np.uint64) ^ (np.asarray(bands).astype(np.uint64) << np.uint64(56))) * _PHI
    return ((mixed >> np.uint64(32)) % np.uint64(buckets)).astype(np.int64)


def task_of(buckets: np.ndarray, n_buckets: int, max_tasks: int) -> np.ndarray:
    """Which task joins each bucket: contiguous ranges of buckets, at most `max_tasks` of them."""
    return np.asarray(buckets, dtype=np.int64) * min(max_tasks, n_buckets) // n_buckets


def write_bucketed(storage: Storage, uri: str, keys: pa.Table, buckets: int, meta: Mapping[bytes, bytes]) -> None:
    """Write `keys` (`band`, `key`, `seq` and more) atomically, one row group per bucket in bucket order."""
    with storage.atomic_output(uri) as out:
        write_bucketed_to(out, keys, buckets, meta)


def write_bucketed_to(sink: Any, keys: pa.Table, buckets: int, meta: Mapping[bytes, bytes]) -> None:
    """Write `keys` to `sink` (a file or stream), one row group per bucket in bucket order.

    Uncompressed and without dictionaries: keys are random 64-bit hashes (incompressible), and a bucket
    is small, so per-chunk decompression would cost more than the bytes it saves; `seq` is stored as int32.
    """
    if len(keys) and int(pc.max(keys["seq"]).as_py()) >= 2**31:
        raise ValueError(f"a drop's keys are numbered below 2**31, got {pc.max(keys['seq'])}")
    keys = keys.set_column(keys.schema.get_field_index("seq"), "seq", keys["seq"].cast(pa.int32()))
    bucket = bucket_of(keys["key"].to_numpy(), keys["band"].to_numpy(), buckets)
    order = np.argsort(bucket, kind="stable")  # rows keep the caller's order within a bucket
    keys, bucket = keys.take(order), bucket[order]
    present, starts = np.unique(bucket, return_index=True)
    ends = [*starts[1:].tolist(), len(bucket)][: len(starts)]
    footer = {**meta, BUCKETS_KEY: b"%d" % buckets, GROUPS_KEY: json.dumps(present.tolist()).encode()}
    with pq.ParquetWriter(sink, keys.schema.with_metadata(footer), **_KEY_OPTIONS) as w:
        for lo, hi in zip(starts.tolist(), ends, strict=True):
            w.write_table(keys.slice(lo, hi - lo), row_group_size=hi - lo)


@dataclass(frozen=True)
class BucketRange:
    """A task that gathers buckets [lo, hi) of a drop from its shards' bucketed key parts into one piece file.

    `parts` are the shards' key files (local `seq`) in drop order, `offsets` the drop position of each
    one's first row. The piece holds the same rows in the same order as the drop's whole keys written by
    `write_bucketed`: exact keys (`band` -1) first, then band keys, each in drop order within a bucket.
    """

    storage: Storage
    parts: tuple[str, ...]
    offsets: tuple[int, ...]
    buckets: int
    lo: int
    hi: int
    piece: str  # where this range's piece is written


def gather_range(job: BucketRange) -> str | None:
    """Write one bucket range's piece (reading only those buckets' row groups of every part); None if empty."""
    exact: list[pa.Table] = []
    other: list[pa.Table] = []
    for uri, offset in zip(job.parts, job.offsets, strict=True):
        metadata = read_footer(job.storage, uri)
        groups = check_buckets(metadata, job.buckets, uri, "re-run the stage that wrote it")
        part = part_of(job.storage, uri, 0, metadata, groups, range(job.lo, job.hi))
        if part is None:
            continue
        with job.storage.open_input(uri) as f:
            table = pq.ParquetFile(f, metadata=metadata).read_row_groups(list(part.row_groups))
        seq = table["seq"].to_numpy().astype(np.int64) + np.int64(offset)
        table = table.set_column(table.schema.get_field_index("seq"), "seq", pa.array(seq, pa.int64()))
        is_exact = pc.equal(table["band"], -1)
        exact.append(table.filter(is_exact))
        other.append(table.filter(pc.invert(is_exact)))
    if not exact:
        return None
    write_bucketed(job.storage, job.piece, pa.concat_tables(exact + other), job.buckets, {})
    return job.piece


def merge_ranges(
    storage: Storage, uri: str, pieces: Sequence[str], schema: pa.Schema, buckets: int, meta: Mapping[bytes, bytes]
) -> None:
    """Write the pieces of consecutive bucket ranges as one bucketed file, one row group (bucket) at a time."""
    footers = [read_footer(storage, p) for p in pieces]
    present = [b for f in footers for b in json.loads((f.metadata or {})[GROUPS_KEY])]
    footer = {**meta, BUCKETS_KEY: b"%d" % buckets, GROUPS_KEY: json.dumps(present).encode()}
    with storage.atomic_output(uri) as out, pq.ParquetWriter(out, schema.with_metadata(footer), **_KEY_OPTIONS) as w:
        for piece, metadata in zip(pieces, footers, strict=True):
            with storage.open_input(piece) as f:
                source = pq.ParquetFile(f, metadata=metadata)
                for g in range(metadata.num_row_groups):
                    group = source.read_row_group(g)
                    w.write_table(group, row_group_size=len(group))


def read_footer(storage: Storage, uri: str) -> pq.FileMetaData:
    """A Parquet file's footer."""
    with storage.open_input(uri) as f:
        return pq.read_metadata(f)


def check_buckets(metadata: pq.FileMetaData, buckets: int, where: str, fix: str) -> dict[int, int]:
    """bucket -> row group of a bucketed file; a file written with another bucket count is refused."""
    meta = metadata.metadata or {}
    found = int(meta.get(BUCKETS_KEY, b"0"))
    if found != buckets:
        raise ValueError(
            f"{where} has {found} buckets, this deployment uses {buckets} (MMRECIPE_DEDUP_BUCKETS): "
            f"set it back to {found}, or {fix}"
        )
    return {b: i for i, b in enumerate(json.loads(meta[GROUPS_KEY]))}


def _group_bytes(metadata: pq.FileMetaData, groups: Sequence[int], columns: set[str] | None = None) -> int:
    names = [metadata.schema.column(c).name for c in range(metadata.num_columns)]
    return sum(
        metadata.row_group(g).column(c).total_compressed_size
        for g in groups
        for c, name in enumerate(names)
        if columns is None or name in columns
    )


@dataclass(frozen=True)
class BucketPart:
    """One drop's keys in some buckets: row groups of its bucketed file, located by the footer read once."""

    storage: Storage
    uri: str
    rank: int  # the drop's place in key order
    row_groups: tuple[int, ...]
    metadata: pq.FileMetaData

    def read(self) -> tuple[pa.Table, int]:
        """The part's rows with a global `pos` (rank << SEQ_BITS | `seq` column), and the bytes read."""
        with self.storage.open_input(self.uri) as f:
            table = pq.ParquetFile(f, metadata=self.metadata).read_row_groups(list(self.row_groups))
        pos = table["seq"].to_numpy().astype(np.int64) + np.int64(self.rank << SEQ_BITS)
        table = table.append_column("pos", pa.array(pos, pa.int64())).drop_columns(["seq"])
        return table, _group_bytes(self.metadata, self.row_groups)


def part_of(
    storage: Storage, uri: str, rank: int, metadata: pq.FileMetaData, groups: Mapping[int, int], buckets: Iterable[int]
) -> BucketPart | None:
    """The part of a drop's bucketed file that holds `buckets`, or None if it has none of them."""
    found = tuple(groups[b] for b in buckets if b in groups)
    return BucketPart(storage, uri, rank, found, metadata) if found else None


def read_rows(
    storage: Storage, uri: str, metadata: pq.FileMetaData, rows: Sequence[int] | None, columns: list[str]
) -> tuple[pa.Table, int]:
    """Rows of a companion file by position (None: all), with a `seq` column, from the row groups holding them."""
    groups = range(metadata.num_row_groups) if rows is None else sorted({r // ROW_GROUP_ROWS for r in rows})
    with storage.open_input(uri) as f:
        table = pq.ParquetFile(f, metadata=metadata).read_row_groups(list(groups), columns=columns)
    first = [g * ROW_GROUP_ROWS for g in groups]
    sizes = [metadata.row_group(g).num_rows for g in groups]
    seq = np.concatenate([np.arange(a, a + n) for a, n in zip(first, sizes, strict=True)] or [np.zeros(0, np.int64)])
    table = table.append_column("seq", pa.array(seq, pa.int64()))
    if rows is not None:
        table = table.filter(pc.is_in(table["seq"], pa.array(sorted(rows), pa.int64())))
    return table, _group_bytes(metadata, groups, set(columns))
