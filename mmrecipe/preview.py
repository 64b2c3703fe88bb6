"""A terminal preview of one published output: sample rows of a table, the head of a text file, or a file list.

`show` prints whatever an asset's `path` metadata points at: a Parquet file or folder (stage tables, mixture
manifest, eval results), a text file (the leaderboard's markdown), a release folder or a binary model.
"""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq

from mmrecipe.storage import Storage

TEXT_SUFFIXES = (".md", ".json", ".txt", ".yaml", ".csv")
BINARY_TYPES = (bytes, bytearray)


def one_line(value: Any, max_chars: int) -> str:
    """`value` as one line of at most `max_chars` characters; a cut value ends with "…"."""
    s = "" if value is None else " ".join(str(value).split())
    return s if len(s) <= max_chars else s[: max_chars - 1] + "…"


def _table_uri(storage: Storage, uri: str) -> str | None:
    """The Parquet file to sample at `uri`: the file itself, or the first one at the top of a folder."""
    if storage.exists(uri):
        return uri if uri.endswith(".parquet") else None
    tables = [u for u in storage.list_files(uri, recursive=False) if u.endswith(".parquet")]
    return tables[0] if tables else None


def preview_lines(storage: Storage, uri: str, rows: int, max_chars: int = 60) -> list[str]:
    """Lines describing the output at `uri`: `rows` sample rows, text lines, or what the folder/file holds."""
    table_uri = _table_uri(storage, uri)
    if table_uri is not None:
        with storage.open_input(table_uri) as f:
            pf = pq.ParquetFile(f)
            head = next(pf.iter_batches(batch_size=max(rows, 1)), None) if pf.metadata.num_rows else None
            sample = head.to_pylist()[:rows] if head is not None else []
        where = "" if table_uri == uri else f" of {table_uri}"
        lines = [f"sample rows ({len(sample)}{where}):"]
        for row in sample:
            cells = {k: v for k, v in row.items() if not isinstance(v, BINARY_TYPES)}
            lines.append("  - " + "; ".join(f"{k}={one_line(v, max_chars)}" for k, v in cells.items()))
        return lines
    if storage.exists(uri):
        if uri.endswith(TEXT_SUFFIXES):
            text = storage.read_bytes(uri).decode("utf-8", errors="replace").splitlines()
            return [f"{uri} ({len(text)} lines):", *text[: max(rows, 1) * 4]]
        return [f"binary file of {storage.size(uri)} bytes: no rows to sample"]
    files = storage.list_files(uri)
    if not files:
        return [f"nothing published at {uri}: re-materialize the asset"]
    return [f"{len(files)} files:", *(f"  {f[len(uri) :].lstrip('/')}" for f in files[: max(rows, 1) * 4])]
