"""A persistent, partitioned dedup index in the lake, and order-independent duplicate decisions.

Layout: one Parquet file per partition (a drop), `<lake>/<asset>/<partition>/dedup_index.parquet`,
holding for every *candidate* document of that partition (one that passed every per-document
filter) its record id, its position in the partition (`seq`), a 64-bit exact key of its
normalized text and its 14 LSH band hashes. The file's footer carries a content hash (`version`)
and the MinHash parameters.

Why this gives the three required properties:

* **Incremental.** A partition's entries are a pure function of that partition's own documents.
  Materializing a drop writes only its own file; nothing global is rebuilt.
* **Idempotent.** Re-materializing a drop rewrites its own file with the same bytes and the
  same version, so nothing else changes.
* **Order-independent.** Documents are totally ordered by (partition key, seq): the copy in the
  earliest drop key comes first. A document's *parent* is the earliest document that shares its
  exact key or any band bucket with it; following parents leads to a *root*, which has no earlier
  match and is the kept copy of the cluster. `decide(p)` reads p's entries plus only the entries of
  earlier partitions that are (transitively) connected to them, so its answer depends on the
  files of partitions <= p and on nothing else, whatever order they were written in.
  A consumer records the versions it read (`DedupDecisions.sources`); when an earlier partition
  is written later (or rewritten with different content), `stale_consumers` reports every later
  partition whose recorded versions no longer match, and re-running `decide` for those brings
  the final state to exactly what in-order materialization would give.

Duplicates are decided FineWeb-style: sharing one of 14 buckets of 8 rows is a near-duplicate
(~0.8 Jaccard), without a verification pass. Documents with no shingles (empty text) only take
part in exact dedup.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrecipe.dedup.minhash import MinHashConfig, band_hashes, exact_keys, minhash_signatures
from mmrecipe.stage_output import SIDE, committed_parts, is_committed, stage_partitions, stage_prefix
from mmrecipe.storage import Storage

INDEX_FILE = "dedup_index.parquet"
VERSION_KEY = b"mmrecipe.dedup.version"
SOURCES_KEY = b"mmrecipe.dedup_sources"  # in a consumer's output: the index versions its decisions read
PARAMS_KEY = b"mmrecipe.dedup.params"
FINEWEB = MinHashConfig()
EXACT_DUPLICATE = "exact_duplicate"
NEAR_DUPLICATE = "near_duplicate"


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

    def sources_metadata(self) -> dict[bytes, bytes]:
        """Parquet schema metadata that records, in the consumer's output, which index versions were read."""
        return {SOURCES_KEY: json.dumps(self.sources, sort_keys=True).encode()}

    def summary(self) -> dict[str, int]:
        """Counts of kept documents and of each duplicate reason."""
        out = {"kept": int(self.keep.sum())}
        for r in (EXACT_DUPLICATE, NEAR_DUPLICATE):
            out[r] = sum(1 for x in self.reason if x == r)
        out["cross_partition"] = sum(
            1 for k, p in zip(self.keep, self.cluster_partition, strict=True) if not k and p != self.partition
        )
        return out


class BandIndex:
    """The dedup index of one asset: a Parquet file of exact keys and LSH band hashes per partition."""

    def __init__(self, storage: Storage, asset: str, config: MinHashConfig = FINEWEB) -> None:
        self.storage, self.asset, self.config = storage, asset, config
        self.bands = _band_columns(config.bands)
        self.params = json.dumps(
            {"num_perm": config.num_perm, "ngram": config.ngram, "bands": config.bands, "rows": config.rows,
             "seed": config.seed},
            sort_keys=True,
        )  # fmt: skip

    # --- files ---------------------------------------------------------------------------------
    def uri(self, partition: str) -> str:
        """Where one partition's index file lives."""
        return self.storage.uri(stage_prefix(self.asset, partition, SIDE), INDEX_FILE)

    def partitions(self) -> list[str]:
        """Partitions that have an index file, in key order."""
        return [p for p in stage_partitions(self.storage, self.asset, SIDE) if self.storage.exists(self.uri(p))]

    def schema(self, version: str = "") -> pa.Schema:
        fields = [
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("seq", pa.int64(), nullable=False),
            pa.field("exact_key", pa.uint64(), nullable=False),
            pa.field("has_shingles", pa.bool_(), nullable=False),
            *[pa.field(b, pa.uint64(), nullable=False) for b in self.bands],
        ]
        return pa.schema(fields, metadata={VERSION_KEY: version.encode(), PARAMS_KEY: self.params.encode()})

    def write(self, partition: str, entries: IndexEntries) -> str:
        """Replace `partition`'s entries with `entries` (atomically) and return their version."""
        if entries.bands.shape[1:] != (len(self.bands),):
            raise ValueError(f"entries have {entries.bands.shape[1:]} bands, the index uses {len(self.bands)}")
        digest = hashlib.sha256(self.params.encode())
        digest.update("\n".join(entries.record_ids).encode())
        for arr in (entries.exact_keys, entries.bands, entries.has_shingles):
            digest.update(np.ascontiguousarray(arr).tobytes())
        version = digest.hexdigest()[:32]
        columns = [
            pa.array(entries.record_ids, pa.string()),
            pa.array(np.arange(len(entries), dtype=np.int64)),
            pa.array(entries.exact_keys.astype(np.uint64)),
            pa.array(entries.has_shingles.astype(bool)),
            *[pa.array(entries.bands[:, b].astype(np.uint64)) for b in range(len(self.bands))],
        ]
        self.storage.write_table(self.uri(partition), pa.Table.from_arrays(columns, schema=self.schema(version)))
        return version

    def _footer(self, partition: str) -> dict[bytes, bytes]:
        with self.storage.open_input(self.uri(partition)) as f:
            return dict(pq.read_metadata(f).metadata or {})

    def version(self, partition: str) -> str | None:
        """The version of a partition's entries, or None if it has none."""
        if not self.storage.exists(self.uri(partition)):
            return None
        return self._footer(partition).get(VERSION_KEY, b"").decode() or None

    def versions(self) -> dict[str, str]:
        """The current version of every partition's entries."""
        return {p: v for p in self.partitions() if (v := self.version(p))}

    def _read(self, partition: str) -> tuple[pa.Table, str]:
        table = self.storage.read_table(self.uri(partition))
        meta = table.schema.metadata or {}
        if meta.get(PARAMS_KEY, b"").decode() != self.params:
            raise ValueError(
                f"dedup index {self.uri(partition)} was built with {meta.get(PARAMS_KEY)!r}, not {self.params}: "
                f"re-materialize partition {partition!r} of {self.asset} with the current MinHash settings"
            )
        return table, meta.get(VERSION_KEY, b"").decode()

    # --- decisions -----------------------------------------------------------------------------
    def decide(self, partition: str) -> DedupDecisions:
        """Keep/drop decisions for `partition`'s entries against itself and every earlier partition."""
        if not self.storage.exists(self.uri(partition)):
            raise FileNotFoundError(
                f"no dedup index for partition {partition!r} of {self.asset} ({self.uri(partition)}): "
                f"materialize {self.asset} for {partition!r} first"
            )
        own, own_version = self._read(partition)
        earlier = [p for p in self.partitions() if p < partition]
        sources = {partition: own_version}
        loaded: dict[str, pa.Table] = {}
        frontier = own
        while frontier.num_rows:
            keys = {c: pc.unique(frontier[c]) for c in ["exact_key", *self.bands]}
            new_parts = []
            for p in earlier:
                table, version = self._read(p)
                sources[p] = version
                mask = pc.is_in(table["exact_key"], value_set=keys["exact_key"])
                for b in self.bands:
                    mask = pc.or_(mask, pc.and_(table["has_shingles"], pc.is_in(table[b], value_set=keys[b])))
                hit = table.filter(mask)
                if p in loaded:
                    hit = hit.filter(pc.invert(pc.is_in(hit["seq"], value_set=loaded[p]["seq"])))
                if hit.num_rows:
                    loaded[p] = pa.concat_tables([loaded[p], hit]) if p in loaded else hit
                    new_parts.append(hit)
            frontier = pa.concat_tables(new_parts) if new_parts else own.slice(0, 0)
        return self._resolve(partition, own, loaded, sources)

    def _resolve(
        self, partition: str, own: pa.Table, loaded: Mapping[str, pa.Table], sources: dict[str, str]
    ) -> DedupDecisions:
        parts = [(p, loaded[p].sort_by("seq")) for p in sorted(loaded)] + [(partition, own.sort_by("seq"))]
        ids = [r for _, t in parts for r in t["record_id"].to_pylist()]
        part_of = [p for p, t in parts for _ in range(t.num_rows)]
        n = len(ids)
        self_idx = np.arange(n)
        shingled = np.concatenate([t["has_shingles"].to_numpy(zero_copy_only=False) for _, t in parts])

        def earliest(column: str, usable: np.ndarray | None) -> np.ndarray:
            values = np.concatenate([t[column].to_numpy() for _, t in parts])
            _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
            out = first[inverse]
            return out if usable is None else np.where(usable, out, self_idx)

        by_exact = earliest("exact_key", None)
        parent = by_exact.copy()
        for b in self.bands:
            parent = np.minimum(parent, earliest(b, shingled))
        root = parent.copy()
        while not np.array_equal(root, nxt := root[root]):
            root = nxt
        own_rows = np.arange(n - own.num_rows, n)
        keep = parent[own_rows] == own_rows
        exact = by_exact[own_rows] < own_rows
        return DedupDecisions(
            partition=partition,
            record_ids=[ids[i] for i in own_rows],
            keep=keep,
            reason=[
                None if k else (EXACT_DUPLICATE if e else NEAR_DUPLICATE) for k, e in zip(keep, exact, strict=True)
            ],
            cluster=[ids[root[i]] for i in own_rows],
            cluster_partition=[part_of[root[i]] for i in own_rows],
            duplicate_of=[None if k else ids[parent[i]] for k, i in zip(keep, own_rows, strict=True)],
            sources=dict(sorted(sources.items())),
        )

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
