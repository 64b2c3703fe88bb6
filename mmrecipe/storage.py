"""A storage root (local folder or s3://bucket/prefix) with atomic, retried writes.

Every byte the pipeline reads or writes goes through a `Storage`; local disk and S3 share
this one code path and differ only in the root URI. Writes go to a temporary name and are
renamed into place, so a killed run never leaves a half-written file at a published path.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

T = TypeVar("T")

PARQUET_OPTIONS = {"compression": "zstd", "use_dictionary": True, "write_statistics": True}
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, ConnectionError)


def is_s3(uri: str) -> bool:
    """Whether a URI names an S3 location."""
    return uri.startswith("s3://")


def retried(fn: Callable[[], T], attempts: int = 4, base_delay_s: float = 0.2) -> T:
    """Result of `fn`, retrying transient storage errors with exponential backoff."""
    for attempt in range(attempts):
        try:
            return fn()
        except FileNotFoundError:
            raise
        except TRANSIENT_ERRORS:
            if attempt == attempts - 1:
                raise
            time.sleep(base_delay_s * 2**attempt)
    raise AssertionError("unreachable")


@dataclass
class Storage:
    """A root location for files: a local directory or an `s3://bucket/prefix` URI."""

    root: str
    endpoint_url: str | None = None
    region: str | None = None
    _fs: pafs.FileSystem | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.root = self.root.rstrip("/") if is_s3(self.root) else os.path.abspath(self.root)

    @property
    def fs(self) -> pafs.FileSystem:
        """The pyarrow filesystem behind this root."""
        if self._fs is None:
            if is_s3(self.root):
                kwargs: dict[str, object] = {}
                endpoint = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
                if endpoint:
                    kwargs["endpoint_override"] = endpoint
                    kwargs["scheme"] = "https" if endpoint.startswith("https") else "http"
                region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                if region:
                    kwargs["region"] = region
                self._fs = pafs.S3FileSystem(**kwargs)
            else:
                self._fs = pafs.LocalFileSystem()
        return self._fs

    # --- naming -------------------------------------------------------------------------
    def uri(self, *parts: str) -> str:
        """The full URI of a path below the root."""
        return "/".join([self.root, *[p.strip("/") for p in parts if p]])

    def _fs_path(self, uri: str) -> str:
        return uri[len("s3://") :] if is_s3(uri) else uri

    def _uri_of(self, fs_path: str) -> str:
        return f"s3://{fs_path}" if is_s3(self.root) else fs_path

    # --- reading ------------------------------------------------------------------------
    def exists(self, uri: str) -> bool:
        """Whether a file exists at `uri`."""
        info = retried(lambda: self.fs.get_file_info(self._fs_path(uri)))
        return info.type == pafs.FileType.File

    def size(self, uri: str) -> int:
        """The size in bytes of the file at `uri`."""
        info = retried(lambda: self.fs.get_file_info(self._fs_path(uri)))
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"no file at {uri}")
        return int(info.size)

    def open_input(self, uri: str) -> BinaryIO:
        """A seekable binary reader of the file at `uri`."""
        return retried(lambda: self.fs.open_input_file(self._fs_path(uri)))  # type: ignore[return-value]

    def read_bytes(self, uri: str) -> bytes:
        """The whole content of the file at `uri`."""
        with self.open_input(uri) as f:
            return f.read()

    def read_range(self, uri: str, offset: int, length: int) -> bytes:
        """`length` bytes of the file at `uri`, starting at `offset`."""

        def read() -> bytes:
            with self.fs.open_input_file(self._fs_path(uri)) as f:
                f.seek(offset)
                return f.read(length)

        return retried(read)

    def list_files(self, prefix_uri: str, recursive: bool = True) -> list[str]:
        """URIs of the files below `prefix_uri`, sorted."""
        selector = pafs.FileSelector(self._fs_path(prefix_uri), recursive=recursive, allow_not_found=True)
        infos = retried(lambda: self.fs.get_file_info(selector))
        return sorted(self._uri_of(i.path) for i in infos if i.type == pafs.FileType.File)

    def list_dirs(self, prefix_uri: str) -> list[str]:
        """Names of the immediate sub-folders of `prefix_uri`, sorted."""
        selector = pafs.FileSelector(self._fs_path(prefix_uri), recursive=False, allow_not_found=True)
        infos = retried(lambda: self.fs.get_file_info(selector))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def read_table(self, uri: str, columns: list[str] | None = None) -> pa.Table:
        """The Parquet table at `uri`."""
        return retried(lambda: pq.read_table(self._fs_path(uri), columns=columns, filesystem=self.fs))

    # --- writing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def atomic_output(self, uri: str) -> Iterator[pa.NativeFile]:
        """A writer whose content appears at `uri` only when the block exits cleanly."""
        final = self._fs_path(uri)
        parent, name = final.rsplit("/", 1)
        tmp = f"{parent}/.tmp-{name}-{uuid.uuid4().hex}"
        retried(lambda: self.fs.create_dir(parent, recursive=True))
        try:
            with self.fs.open_output_stream(tmp) as out:
                yield out
            retried(lambda: self.fs.move(tmp, final))
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.delete_file(tmp)
            raise

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write `data` to `uri` atomically, retrying transient errors."""

        def write() -> None:
            with self.atomic_output(uri) as out:
                out.write(data)

        retried(write)

    def write_table(self, uri: str, table: pa.Table) -> None:
        """Write `table` as zstd Parquet to `uri` atomically, retrying transient errors."""

        def write() -> None:
            with self.atomic_output(uri) as out:
                pq.write_table(table, out, **PARQUET_OPTIONS)

        retried(write)

    def delete(self, uri: str) -> None:
        """Remove the file at `uri` if it exists."""
        with contextlib.suppress(FileNotFoundError):
            retried(lambda: self.fs.delete_file(self._fs_path(uri)))

    def copy_file_in(self, local_path: str, uri: str, chunk: int = 8 << 20) -> None:
        """Copy a local file to `uri` atomically."""

        def copy() -> None:
            with open(local_path, "rb") as src, self.atomic_output(uri) as out:
                while block := src.read(chunk):
                    out.write(block)

        retried(copy)
