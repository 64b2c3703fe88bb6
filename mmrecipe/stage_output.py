"""A stage's output for one partition: kept rows, a rejects table, the counts that tie them, and its commit.

Every stage streams its records into Parquet parts: a `PartWriter` per shard (or one `StageWriter` for a
single-writer stage). Kept rows go to the `data` tree; dropped (policy) and rejected (bad input) records go to
the `rejects` tree with a reason code, so that `in = kept + dropped + rejected` can be checked from the files
themselves. Parts are written under the `staging` tree and moved in by `publish_commit`, which writes the
partition's commit file last. The lake layout of an asset:

    <lake>/<asset>/data/<partition>/part-NNNNN.parquet      kept rows, one part per shard in shard order
    <lake>/<asset>/rejects/<partition>/part-NNNNN.parquet   dropped and rejected records, the same parts
    <lake>/<asset>/side/<partition>/…                       side files: dedup indexes, side parts `<name>-NNNNN`
    <lake>/<asset>/commits/<partition>.json                 the commit: every part with its rows, bytes, sha256
    <lake>/<asset>/staging/<partition>/…                    parts and shard markers before the commit

so HF `datasets` (`data_dir=<lake>/<asset>/data`), duckdb and `pyarrow.dataset` read kept rows alone (the
commit file lies outside the `data` tree: HF `datasets` reads `_`-prefixed files). Readers in this package
trust only committed parts (`committed_parts`, `read_stage_table`); parts a commit does not name (a crashed
run's leftovers) are removed by the next commit, and staging is removed after it. Local files are written
under temporary dot-names (`.tmp-…`) that no `*.parquet` glob matches and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mmrecipe.drops import validate_drop_name
from mmrecipe.preview import one_line
from mmrecipe.storage import PARQUET_OPTIONS, Storage, retried, sweep_stale_temp_files

PROVENANCE_FIELDS: list[pa.Field] = [
    pa.field("record_id", pa.string(), nullable=False),
    pa.field("drop", pa.string(), nullable=False),
    pa.field("warc_path", pa.string(), nullable=False),
    pa.field("warc_offset", pa.int64(), nullable=False),
]
PROVENANCE_COLUMNS = [f.name for f in PROVENANCE_FIELDS]

REJECTS_SCHEMA = pa.schema(
    [
        *PROVENANCE_FIELDS,
        pa.field("warc_length", pa.int64()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),  # "dropped" (policy) or "rejected" (bad input)
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]
)
DATA, REJECTS, SIDE, STAGING = "data", "rejects", "side", "staging"  # the trees of an asset's folder
COMMITS = "commits"


def part_name(index: int, prefix: str = "part") -> str:
    """The file name of the `index`-th committed part: `part-00000.parquet`, or `<side name>-00000.parquet`."""
    return f"{prefix}-{index:05d}.parquet"


def stage_prefix(asset: str, partition: str, tree: str = DATA) -> str:
    """The lake-relative folder of one asset partition in one tree: `<asset>/<tree>/<partition>`.

    Unsafe partition keys are refused."""
    if tree not in (DATA, REJECTS, SIDE, STAGING):
        raise ValueError(f"unknown tree {tree!r} of {asset}: use {DATA}, {REJECTS}, {SIDE} or {STAGING}")
    return f"{asset}/{tree}/{validate_drop_name(partition)}"


def post_commit_staging(storage: Storage, asset: str, partition: str, name: str) -> str:
    """The folder where a run of one asset partition stages files it still reads after the partition's commit
    (which removes `<asset>/staging/<partition>`): `<asset>/staging/_post_commit/<partition>/<name>`.

    A staging tree, so readers and the published lake never include it, and never a partition's own staging
    folder (partition keys start with a letter or a digit). The run deletes it when done; a killed run's leftovers
    are overwritten and deleted by the next run of the partition."""
    return storage.uri(_post_commit_root(asset, partition), name)


def remove_post_commit_staging(storage: Storage, asset: str, partition: str) -> None:
    """Delete the partition's post-commit staging folder, `<asset>/staging/_post_commit/<partition>`, and all in it."""
    storage.delete_dir(storage.uri(_post_commit_root(asset, partition)))


def _post_commit_root(asset: str, partition: str) -> str:
    return f"{asset}/{STAGING}/_post_commit/{validate_drop_name(partition)}"


def stage_uri(storage: Storage, asset: str, partition: str, tree: str = DATA) -> str:
    """The folder of one partition's parts in `tree`: what `pyarrow.dataset` reads (the `path` metadata)."""
    return storage.uri(stage_prefix(asset, partition, tree))


def stage_partitions(storage: Storage, asset: str, tree: str = DATA) -> list[str]:
    """The partitions of an asset that have a folder in `tree`, sorted."""
    return storage.list_dirs(storage.uri(asset, tree))


@dataclass
class StageCounts:
    """How many records a stage saw, kept, dropped and rejected, by reason."""

    stage: str
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.kept + sum(self.dropped.values()) + sum(self.rejected.values())

    def as_metadata(self) -> dict[str, int]:
        """Counts as plain ints: total, kept, dropped, rejected and one key per reason."""
        meta = {
            "total": int(self.total),
            "kept": int(self.kept),
            "dropped": int(sum(self.dropped.values())),
            "rejected": int(sum(self.rejected.values())),
        }
        meta |= {f"dropped_{r}": int(n) for r, n in sorted(self.dropped.items())}
        meta |= {f"rejected_{r}": int(n) for r, n in sorted(self.rejected.items())}
        return meta


class _ParquetSink:
    """Batched Parquet writing to a local temp file, published atomically on close."""

    def __init__(self, storage: Storage, uri: str, schema: pa.Schema, batch_rows: int) -> None:
        self.storage, self.uri, self.schema, self.batch_rows = storage, uri, schema, batch_rows
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        self._tmp = os.path.join(_tmp_dir(storage), f"mmrecipe-{uuid.uuid4().hex}.parquet")
        self._writer = pq.ParquetWriter(self._tmp, schema, **PARQUET_OPTIONS)

    def add(self, row: Mapping[str, Any]) -> None:
        self.rows.append(dict(row))
        self.count += 1
        if len(self.rows) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self._writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def publish(self) -> Part:
        self.flush()
        self._writer.close()
        try:
            digest = _sha256_of_file(self._tmp)
            retried(lambda: self.storage.copy_file_in(self._tmp, self.uri))
            return Part(self.uri, self.count, os.path.getsize(self._tmp), digest)
        finally:
            os.unlink(self._tmp)

    def abort(self) -> None:
        self._writer.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)


def _tmp_dir(storage: Storage) -> str:
    """The local scratch folder of Parquet being written (killed runs' leftovers there expire after a day)."""
    path = storage.scratch_dir()
    sweep_stale_temp_files(path, "mmrecipe-")
    return path


@dataclass(frozen=True)
class Part:
    """One Parquet part file: where it is, its rows, its size and the sha256 of its bytes."""

    uri: str
    rows: int
    bytes: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Part:
        return cls(str(d["uri"]), int(d["rows"]), int(d["bytes"]), str(d["sha256"]))


def _sha256_of_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class StageOutput:
    """Where a finished stage partition was published (its `data` and `rejects` folders), and its counts."""

    data_uri: str
    rejects_uri: str
    counts: StageCounts
    preview: list[dict[str, Any]]


class PartWriter:
    """Streams one part of kept rows and one part of rejects (a shard's, or a whole stage's) to Parquet."""

    def __init__(
        self,
        storage: Storage,
        stage: str,
        data_uri: str,
        rejects_uri: str,
        schema: pa.Schema,
        batch_rows: int = 2048,
        preview_rows: int = 5,
    ) -> None:
        missing = [c for c in PROVENANCE_COLUMNS if c not in schema.names]
        if missing:
            raise ValueError(f"stage schema for {stage} lacks provenance columns {missing}")
        self.stage = stage
        self.data = _ParquetSink(storage, data_uri, schema, batch_rows)
        self.rejects = _ParquetSink(storage, rejects_uri, REJECTS_SCHEMA, batch_rows)
        self.counts = StageCounts(stage=stage)
        self.preview: list[dict[str, Any]] = []
        self.preview_rows = preview_rows

    def keep(self, row: Mapping[str, Any]) -> None:
        """Write one kept row."""
        self.data.add(row)
        self.counts.kept += 1
        if len(self.preview) < self.preview_rows:
            self.preview.append(dict(row))

    def drop(self, prov: Mapping[str, Any], reason: str, detail: str = "") -> None:
        """Record a record removed by a policy filter (quality, dedup, opt-out...)."""
        self._reject(prov, "dropped", reason, detail)
        self.counts.dropped[reason] += 1

    def reject(self, prov: Mapping[str, Any], reason: str, detail: str = "") -> None:
        """Record a record that could not be processed (corrupt, unparseable, too large...)."""
        self._reject(prov, "rejected", reason, detail)
        self.counts.rejected[reason] += 1

    def _reject(self, prov: Mapping[str, Any], outcome: str, reason: str, detail: str) -> None:
        row = {c: prov[c] for c in PROVENANCE_COLUMNS}
        row |= {
            "warc_length": prov.get("warc_length"),
            "stage": self.stage,
            "outcome": outcome,
            "reason": reason,
            "detail": detail[:2000],
        }
        self.rejects.add(row)

    def close_parts(self) -> tuple[Part, Part]:
        """Write both parts out (to their staging URIs) and return them."""
        return self.data.publish(), self.rejects.publish()

    def abort(self) -> None:
        """Discard everything written so far."""
        self.data.abort()
        self.rejects.abort()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()


class StageWriter(PartWriter):
    """Streams a single-writer stage partition (one part) to staging, and publishes it with a commit on close."""

    def __init__(
        self,
        storage: Storage,
        asset: str,
        partition: str,
        schema: pa.Schema,
        batch_rows: int = 2048,
        preview_rows: int = 5,
    ) -> None:
        self.storage, self.partition = storage, partition
        staging = storage.uri(stage_prefix(asset, partition, STAGING), uuid.uuid4().hex)
        super().__init__(
            storage, asset, f"{staging}/data.parquet", f"{staging}/rejects.parquet", schema, batch_rows, preview_rows
        )

    def close(self) -> StageOutput:
        """Publish both tables with the partition's commit and return where they are."""
        data, rejects = self.close_parts()
        publish_commit(self.storage, self.stage, self.partition, [data], [rejects])
        return StageOutput(
            stage_uri(self.storage, self.stage, self.partition),
            stage_uri(self.storage, self.stage, self.partition, REJECTS),
            self.counts,
            self.preview,
        )

    def __enter__(self) -> StageWriter:
        return self


# --- commits ---------------------------------------------------------------------------------------
def commit_uri(storage: Storage, asset: str, partition: str) -> str:
    """Where the commit file of one asset partition lives: `<asset>/commits/<partition>.json`."""
    return storage.uri(asset, COMMITS, f"{validate_drop_name(partition)}.json")


def publish_commit(
    storage: Storage,
    asset: str,
    partition: str,
    data: Sequence[Part],
    rejects: Sequence[Part],
    side: Mapping[str, Sequence[Part]] | None = None,
) -> dict[str, Any]:
    """Move staged parts in (numbered in the given order), write the commit file last, then clean up.

    `side` maps a side name to its parts (`side/<partition>/<name>-NNNNN.parquet`). Parts in the `data` and
    `rejects` folders that the commit does not name, side parts of the named sides it does not name, and the
    partition's staging are removed after the commit. Returns the commit (as written).
    """
    trees: dict[str, list[dict[str, Any]]] = {}
    targets = [(DATA, "part", data), (REJECTS, "part", rejects)]
    targets += [(SIDE, name, parts) for name, parts in sorted((side or {}).items())]
    for tree, prefix, parts in targets:
        folder = stage_uri(storage, asset, partition, tree)
        entries = []
        for i, part in enumerate(parts):
            target = f"{folder}/{part_name(i, prefix)}"
            if part.uri != target:
                storage.move(part.uri, target)
            entries.append(
                {"name": part_name(i, prefix), "rows": part.rows, "bytes": part.bytes, "sha256": part.sha256}
            )
        trees[tree if tree != SIDE else f"{SIDE}/{prefix}"] = entries
    commit = {"asset": asset, "partition": partition, "parts": trees}
    storage.write_bytes(commit_uri(storage, asset, partition), json.dumps(commit, indent=1, sort_keys=True).encode())
    for tree, prefix, _ in targets:
        folder = stage_uri(storage, asset, partition, tree)
        named = {e["name"] for e in trees[tree if tree != SIDE else f"{SIDE}/{prefix}"]}
        for uri in storage.list_files(folder, recursive=False):
            name = uri.rsplit("/", 1)[1]
            if name.startswith(f"{prefix}-") and name.endswith(".parquet") and name not in named:
                storage.delete(uri)
    storage.delete_dir(storage.uri(stage_prefix(asset, partition, STAGING)))
    return commit


def read_commit(storage: Storage, asset: str, partition: str) -> dict[str, Any]:
    """The commit of one asset partition; FileNotFoundError (saying what to do) when it has none."""
    uri = commit_uri(storage, asset, partition)
    try:
        return json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{asset} has no committed output for partition {partition!r} (no {uri}): materialize it first"
        ) from None


def is_committed(storage: Storage, asset: str, partition: str) -> bool:
    """Whether the partition has a commit file."""
    return storage.exists(commit_uri(storage, asset, partition))


def commit_version(storage: Storage, asset: str, partition: str) -> str:
    """A content version of one committed partition: the sha256 of its commit file (which names every digest)."""
    return hashlib.sha256(storage.read_bytes(commit_uri(storage, asset, partition))).hexdigest()[:32]


def committed(storage: Storage, asset: str, partition: str, tree: str = DATA, side: str = "") -> list[Part]:
    """The committed parts of one partition in `tree` (or of the side parts named `side`), in order.

    Each part is checked against its commit entry by its size (one listing of the folder, not a read): a
    missing or changed part is an error that names it (see `verify_partition` for the full digest check)."""
    key = f"{SIDE}/{side}" if side else tree
    folder = stage_uri(storage, asset, partition, SIDE if side else tree)
    entries = read_commit(storage, asset, partition)["parts"].get(key, [])
    parts = [Part(f"{folder}/{e['name']}", e["rows"], e["bytes"], e["sha256"]) for e in entries]
    if parts:
        sizes = {uri: size for uri, size, _ in storage.stat_files(folder)}
        for part in parts:
            _check(part, sizes.get(part.uri), asset, partition)
    return parts


def _check(part: Part, size: int | None, asset: str, partition: str, rows: int | None = None) -> None:
    """Refuse a committed part that is missing or differs from its commit entry in size or rows."""
    fix = f"re-materialize {asset} for partition {partition!r}"
    if size is None:
        raise FileNotFoundError(f"{asset}[{partition}]: committed part {part.uri} is missing: {fix}")
    if size != part.bytes or (rows is not None and rows != part.rows):
        found = f"{size} bytes" + ("" if rows is None else f", {rows} rows")
        raise ValueError(
            f"{asset}[{partition}]: committed part {part.uri} has {found}, its commit says {part.bytes} bytes, "
            f"{part.rows} rows: it changed after the commit; {fix}"
        )


def committed_parts(storage: Storage, asset: str, partition: str, tree: str = DATA, side: str = "") -> list[str]:
    """The URIs of the committed parts of one partition in `tree` (or of side parts `side`), in order."""
    return [p.uri for p in committed(storage, asset, partition, tree, side)]


def committed_rows(storage: Storage, asset: str, partition: str, tree: str = DATA) -> int:
    """The number of committed rows of one partition in `tree` (from the commit file)."""
    return sum(p.rows for p in committed(storage, asset, partition, tree))


def read_stage_table(
    storage: Storage, asset: str, partition: str, tree: str = DATA, columns: list[str] | None = None
) -> pa.Table:
    """The committed rows of one partition in `tree`, parts concatenated in order (each part's rows checked)."""
    tables = []
    for part in committed(storage, asset, partition, tree):
        tables.append(storage.read_table(part.uri, columns))
        _check(part, part.bytes, asset, partition, tables[-1].num_rows)
    return pa.concat_tables(tables)


def iter_stage_rows(
    storage: Storage, asset: str, partition: str, tree: str = DATA, columns: list[str] | None = None,
    batch_rows: int = 256,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The committed rows of one partition in `tree` as dicts, streamed batch by batch in part order."""
    for part in committed(storage, asset, partition, tree):
        with storage.open_input(part.uri) as f:
            parquet = pq.ParquetFile(f)
            _check(part, part.bytes, asset, partition, parquet.metadata.num_rows)
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
                yield from batch.to_pylist()


def _verify(storage: Storage, part: Part, asset: str, partition: str) -> None:
    if not storage.exists(part.uri):
        _check(part, None, asset, partition)
    digest, size = hashlib.sha256(), 0
    with storage.open_input(part.uri) as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    _check(part, size, asset, partition)
    if digest.hexdigest() != part.sha256:
        raise ValueError(
            f"{asset}[{partition}]: committed part {part.uri} has sha256 {digest.hexdigest()}, its commit says "
            f"{part.sha256}: it changed after the commit; re-materialize {asset} for partition {partition!r}"
        )
    with storage.open_input(part.uri) as f:
        _check(part, size, asset, partition, pq.ParquetFile(f).metadata.num_rows)


def verify_partition(storage: Storage, asset: str, partition: str) -> list[str]:
    """Every problem of one committed partition: each part its commit names is read whole and its size, rows
    and sha256 compared with the commit (a missing part, a tampered one). Empty when all match."""
    problems = []
    for key, entries in sorted(read_commit(storage, asset, partition)["parts"].items()):
        folder = stage_uri(storage, asset, partition, key.split("/")[0])
        for e in entries:
            part = Part(f"{folder}/{e['name']}", e["rows"], e["bytes"], e["sha256"])
            try:
                _verify(storage, part, asset, partition)
            except (OSError, ValueError, pa.ArrowInvalid) as error:
                problems.append(str(error))
    return problems


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: list[str], max_chars: int = 80) -> str:
    """A markdown table of `rows` restricted to `columns`, cells truncated to `max_chars`."""

    def cell(v: Any) -> str:
        return one_line(v, max_chars).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
