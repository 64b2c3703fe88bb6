"""Shards of a drop: spans of one kind's raw_crawl records, in (warc_path, warc_offset) order, cut by bytes.

A shard is a small spec, never records: rows [start, stop) of the kind's sorted index (or of one
committed part, `source`), with the keys of its planned span's first and last record so that a worker
reads only the row groups it needs. `plan_shards` streams three columns of the index; `read_shard`
is how a shard function gets its rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mmrecipe.crawl_index import RAW_CRAWL, kind_filter
from mmrecipe.settings import DEFAULT_SHARD_BYTES
from mmrecipe.stage_output import committed, committed_parts
from mmrecipe.storage import Storage, retried

KEY = ["warc_path", "warc_offset"]
PART = "part"  # the kind of a shard over the rows of one committed part (`Shard.source`)


@dataclass(frozen=True)
class Shard:
    """A span of one drop's records: rows [start, stop) of its input, their WARC bytes and read bounds."""

    drop: str
    kind: str  # html / image / audio: raw_crawl records of that kind; `part`: rows of the Parquet file `source`
    index: int  # its place in the plan, so the number of its output part
    start: int
    stop: int
    bytes: int  # summed warc_length (approximate for the halves of a split shard)
    lo: tuple[str, int] | None = None  # key of the planned span's first record (None: read everything)
    hi: tuple[str, int] | None = None  # key of the planned span's last record
    base: int = 0  # the row of `lo`: the halves of a split shard keep their parent's bounds
    source: str = ""

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def span(self) -> str:
        """A name of this span, unique within a plan: `<kind>-<index>-<start>-<stop>`."""
        return f"{self.kind}-{self.index:05d}-{self.start:010d}-{self.stop:010d}"

    def split(self) -> tuple[Shard, Shard]:
        """The two halves of this span (by rows), for isolating a record that crashes its worker."""
        if self.rows < 2:
            raise ValueError(f"shard {self.span} of {self.drop} has {self.rows} rows and cannot be split")
        mid = self.start + self.rows // 2
        first = self.bytes * (mid - self.start) // self.rows
        return replace(self, stop=mid, bytes=first), replace(self, start=mid, bytes=self.bytes - first)


def _index(lake: Storage, drop: str) -> ds.Dataset:
    return lake.dataset(committed_parts(lake, RAW_CRAWL, drop))


def plan_shards(lake: Storage, drop: str, kind: str, target_bytes: int = DEFAULT_SHARD_BYTES) -> list[Shard]:
    """The shards of `drop`'s records of `kind`, each about `target_bytes` of WARC records (at least one shard).

    A record starting at byte b of the kind's concatenated records goes to shard b // target_bytes
    (empty cells skipped), so the plan is a pure function of the index and the target.
    """
    if target_bytes < 1:
        raise ValueError(f"target_bytes must be at least 1, got {target_bytes}")
    table = retried(lambda: _index(lake, drop).to_table(filter=kind_filter(kind), columns=[*KEY, "warc_length"]))
    table = table.sort_by([(k, "ascending") for k in KEY])
    n = table.num_rows
    if n == 0:
        return [Shard(drop, kind, 0, 0, 0, 0)]
    lengths = pc.fill_null(table["warc_length"], 0).to_numpy().astype(np.int64)
    ends = np.cumsum(lengths)
    cell = (ends - lengths) // target_bytes
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    stops = np.r_[starts[1:], n]
    paths, offsets = table["warc_path"], table["warc_offset"]
    shards = []
    for i, (a, b) in enumerate(zip(starts.tolist(), stops.tolist(), strict=True)):
        size = int(ends[b - 1] - ends[a] + lengths[a])
        lo = (paths[a].as_py(), offsets[a].as_py())
        hi = (paths[b - 1].as_py(), offsets[b - 1].as_py())
        shards.append(Shard(drop, kind, i, a, b, size, lo, hi, a))
    return shards


def part_shards(lake: Storage, asset: str, drop: str) -> list[Shard]:
    """One shard per committed data part of `asset`'s partition `drop` (rows from the commit file)."""
    parts = committed(lake, asset, drop)
    return [Shard(drop, PART, i, 0, p.rows, p.bytes, source=p.uri) for i, p in enumerate(parts)]


def _key_range(lo: tuple[str, int], hi: tuple[str, int]) -> pc.Expression:
    path, offset = pc.field("warc_path"), pc.field("warc_offset")
    after = (path > lo[0]) | ((path == lo[0]) & (offset >= lo[1]))
    before = (path < hi[0]) | ((path == hi[0]) & (offset <= hi[1]))
    return after & before


def read_shard(lake: Storage, shard: Shard, columns: list[str] | None = None) -> pa.Table:
    """The input rows of `shard`, in order (`columns`: all when None)."""
    if shard.kind == PART:
        table = lake.read_table(shard.source, columns)
        return table.slice(shard.start, shard.rows)
    if shard.rows == 0:
        return _index(lake, shard.drop).schema.empty_table().select(columns) if columns else pa.table({})
    read = None if columns is None else list(dict.fromkeys([*columns, *KEY]))
    where = kind_filter(shard.kind)
    if shard.lo is not None and shard.hi is not None:
        where = where & _key_range(shard.lo, shard.hi)
    table = retried(lambda: _index(lake, shard.drop).to_table(filter=where, columns=read))
    table = table.sort_by([(k, "ascending") for k in KEY]).slice(shard.start - shard.base, shard.rows)
    if table.num_rows != shard.rows:
        raise ValueError(
            f"raw_crawl[{shard.drop}] changed since shard {shard.span} was planned ({table.num_rows} rows, "
            f"expected {shard.rows}): re-run the stage"
        )
    return table if columns is None else table.select(columns)
