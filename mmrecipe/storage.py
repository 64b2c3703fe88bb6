"""A storage root (local folder or s3://bucket/prefix) with atomic, retried writes.

Every byte the pipeline reads or writes goes through a `Storage`; local disk and S3 share
this one code path and differ only in the root URI.

Atomic writes:
- local: write to a hidden temporary name in the same folder, then rename into place;
- S3: stream a multipart upload straight to the final key and complete it only when the
  writer exits cleanly (small objects: one PutObject at the end). On an exception the upload
  is aborted; a killed process leaves only an incomplete multipart upload, which S3 never
  shows as an object (add an AbortIncompleteMultipartUpload lifecycle rule to reclaim it).
So a killed run never leaves a half-written file at a published path, on either backend. What
it leaves locally (a `.tmp-*` file) is removed by the first write into that folder once it is
older than `STALE_TMP_SECONDS`.

Reads, listings and Parquet go through pyarrow's S3 filesystem; uploads go through boto3,
because pyarrow cannot abort a multipart upload. S3 readers fetch a 4 MiB window per request
(`S3ReadAhead`), so scanning a WARC in offset order is a handful of GETs, not one per record.
Both clients use the standard AWS credential chain (environment, IRSA web identity, instance
profile). Endpoint and region are given explicitly (the edge reads `MMRECIPE_S3_ENDPOINT_URL` /
`AWS_ENDPOINT_URL*` and `AWS_REGION` into the settings), because the two clients' own chains differ:
boto3 ignores `AWS_REGION`. `scratch` is the local folder for files before they are published.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

T = TypeVar("T")

PARQUET_OPTIONS = {"compression": "zstd", "use_dictionary": True, "write_statistics": True}
STALE_TMP_SECONDS = 24 * 3600  # a temporary file this old belongs to a run that was killed
_SWEPT: set[str] = set()  # local folders already swept of stale temporary files by this process
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, ConnectionError)
# pyarrow reports every S3 failure as OSError; these markers say retrying cannot help.
_PERMANENT_S3_MARKERS = (
    "ACCESS_DENIED",
    "NO_SUCH_BUCKET",
    "INVALID_ACCESS_KEY_ID",
    "SIGNATURE_DOES_NOT_MATCH",
    "AccessDenied",
    "NoSuchBucket",
    "InvalidAccessKeyId",
)
_RETRYABLE_S3_CODES = {
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
}
S3_PART_BYTES = 16 << 20  # multipart part size; S3 needs >= 5 MiB for every part but the last
S3_MAX_PARTS = 10_000
S3_READ_BUFFER_BYTES = 4 << 20  # read-ahead of S3 readers: one GET serves many small sequential reads


def is_s3(uri: str) -> bool:
    """Whether a URI names an S3 location."""
    return uri.startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an `s3://bucket/key` URI; raises ValueError saying how to write one."""
    if not is_s3(uri) or not uri[len("s3://") :].split("/", 1)[0]:
        raise ValueError(f"{uri!r} is not an S3 URI: write it as s3://BUCKET/PREFIX")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def is_transient(exc: BaseException) -> bool:
    """Whether a storage error is worth retrying (network trouble, throttling, 5xx)."""
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        return False
    try:
        import botocore.exceptions as bex
    except ImportError:  # pragma: no cover - boto3 is a dependency
        bex = None
    if bex is not None:
        if isinstance(exc, bex.ClientError):
            err = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            return str(err.get("Code")) in _RETRYABLE_S3_CODES or status >= 500
        if isinstance(exc, bex.ConnectionError | bex.HTTPClientError | bex.IncompleteReadError):
            return True
        if isinstance(exc, bex.BotoCoreError):
            return False
    if isinstance(exc, OSError):
        return not any(marker in str(exc) for marker in _PERMANENT_S3_MARKERS)
    return isinstance(exc, TRANSIENT_ERRORS)


def retried(fn: Callable[[], T], attempts: int = 4, base_delay_s: float = 0.2) -> T:
    """Result of `fn`, retrying transient storage errors with exponential backoff."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as e:
            if attempt == attempts - 1 or not is_transient(e):
                raise
            time.sleep(base_delay_s * 2**attempt)
    raise AssertionError("unreachable")


class S3MultipartWriter(io.RawIOBase):
    """A write-only stream to one S3 key that becomes visible only on `commit()`.

    Bytes are buffered into parts of `part_bytes` and uploaded as a multipart upload that is
    started lazily; `commit()` completes it (or does one PutObject if the data fit in one part),
    `abort()` cancels it. Each request is retried on transient errors.
    """

    def __init__(self, client: Any, bucket: str, key: str, part_bytes: int = S3_PART_BYTES) -> None:
        super().__init__()
        if part_bytes < 5 << 20:
            raise ValueError(f"S3 multipart parts must be at least 5 MiB, got {part_bytes} bytes")
        self.client, self.bucket, self.key, self.part_bytes = client, bucket, key, part_bytes
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._written = 0
        self.committed = False
        self._aborted = False

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._written

    def write(self, data: Any) -> int:  # type: ignore[override]
        if self.closed or self.committed or self._aborted:
            raise ValueError(f"write to s3://{self.bucket}/{self.key} after it was closed")
        view = memoryview(data).cast("B")
        self._buffer += view
        self._written += len(view)
        while len(self._buffer) >= self.part_bytes:
            self._upload_part(bytes(self._buffer[: self.part_bytes]))
            del self._buffer[: self.part_bytes]
        return len(view)

    def _upload_part(self, body: bytes) -> None:
        if self._upload_id is None:
            created = retried(lambda: self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key))
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        if number > S3_MAX_PARTS:
            raise OSError(
                f"s3://{self.bucket}/{self.key}: more than {S3_MAX_PARTS} parts of {self.part_bytes} bytes; "
                "raise part_bytes for objects this large"
            )
        resp = retried(
            lambda: self.client.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body
            )
        )
        self._parts.append({"ETag": resp["ETag"], "PartNumber": number})

    def commit(self) -> None:
        """Publish the object: complete the multipart upload, or put the whole small object."""
        if self.committed:
            return
        if self._aborted:
            raise OSError(f"s3://{self.bucket}/{self.key}: cannot commit an aborted upload")
        if self._upload_id is None:
            body = bytes(self._buffer)
            retried(lambda: self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body))
        else:
            if self._buffer:
                self._upload_part(bytes(self._buffer))
            retried(
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
            )
        self._buffer.clear()
        self.committed = True
        super().close()

    def abort(self) -> None:
        """Cancel the upload; nothing appears at the key."""
        self._aborted = True
        self._buffer.clear()
        if self._upload_id is not None and not self.committed:
            with contextlib.suppress(Exception):
                retried(
                    lambda: self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
                    )
                )
            self._upload_id = None
        super().close()

    def close(self) -> None:
        # A library may close its sink when it is done (Parquet writers do); that neither publishes
        # nor cancels anything: the owner decides with commit() or abort().
        super().close()


class S3ReadAhead(io.RawIOBase):
    """A seekable reader over a pyarrow S3 file that fetches a window of `window_bytes` per request.

    Reads and seeks anywhere inside the current window are served from memory, so scanning a
    file in offset order (seek back a little, read a header, read on) costs one ranged GET per
    window instead of one per read.
    """

    def __init__(self, raw: pa.NativeFile, window_bytes: int = S3_READ_BUFFER_BYTES) -> None:
        super().__init__()
        self.raw, self.window_bytes = raw, window_bytes
        self._size = int(raw.size())
        self._pos = 0
        self._start = 0
        self._window = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def size(self) -> int:
        return self._size

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        if n is None or n < 0:
            n = self._size - self._pos
        n = max(0, min(n, self._size - self._pos))
        if n == 0:
            return b""
        end = self._pos + n
        if not (self._start <= self._pos and end <= self._start + len(self._window)):
            want = max(n, self.window_bytes)
            start = self._pos
            self._window = retried(lambda: self.raw.read_at(min(want, self._size - start), start))
            self._start = start
        lo = self._pos - self._start
        self._pos = end
        return self._window[lo : lo + n]

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
            self._window = b""
        super().close()


def sweep_stale_temp_files(folder: str, prefix: str, max_age: float = STALE_TMP_SECONDS) -> int:
    """Delete the files of a local `folder` named `prefix*` older than `max_age` seconds, once per process.

    Returns how many were deleted. Only old files go: a younger one may belong to a live writer.
    """
    if folder in _SWEPT:
        return 0
    _SWEPT.add(folder)
    removed, cutoff = 0, time.time() - max_age
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                if entry.name.startswith(prefix) and entry.is_file() and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
    return removed


@dataclass
class Storage:
    """A root location for files: a local directory or an `s3://bucket/prefix` URI."""

    root: str
    endpoint_url: str | None = None
    region: str | None = None
    scratch: str | None = None
    _fs: pafs.FileSystem | None = field(default=None, repr=False, compare=False)
    _client: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if is_s3(self.root):
            split_s3_uri(self.root)
            self.root = self.root.rstrip("/")
        else:
            self.root = os.path.abspath(self.root)

    def __getstate__(self) -> dict[str, Any]:
        # boto3 clients do not pickle; rebuild them lazily in the other process
        return {**self.__dict__, "_client": None}

    @property
    def is_s3(self) -> bool:
        return is_s3(self.root)

    def scratch_dir(self) -> str:
        """The local folder (created) where files wait before they are published here: `scratch`, else
        `<system temp>/mmrecipe`."""
        path = self.scratch or os.path.join(tempfile.gettempdir(), "mmrecipe")
        os.makedirs(path, exist_ok=True)
        return path

    @property
    def fs(self) -> pafs.FileSystem:
        """The pyarrow filesystem behind this root."""
        if self._fs is None:
            if self.is_s3:
                kwargs: dict[str, Any] = {
                    "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=5),
                    "connect_timeout": 10.0,
                    "request_timeout": 60.0,
                }
                endpoint = self.endpoint_url
                if endpoint:
                    kwargs["endpoint_override"] = endpoint
                    kwargs["scheme"] = "https" if endpoint.startswith("https") else "http"
                if self.region:
                    kwargs["region"] = self.region
                self._fs = pafs.S3FileSystem(**kwargs)
            else:
                self._fs = pafs.LocalFileSystem()
        return self._fs

    @property
    def s3_client(self) -> Any:
        """A boto3 S3 client for this root's endpoint and region (used for atomic uploads)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60)
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
            )
        return self._client

    # --- naming -------------------------------------------------------------------------
    def uri(self, *parts: str) -> str:
        """The full URI of a path below the root; refuses `..` segments, so nothing escapes the root."""
        clean = [p.strip("/") for p in parts if p]
        if any(seg in ("..", ".") for p in clean for seg in p.split("/")):
            raise ValueError(f"path {'/'.join(clean)!r} below {self.root} has a '.' or '..' segment: refused")
        return "/".join([self.root, *clean])

    def _fs_path(self, uri: str) -> str:
        return uri[len("s3://") :] if is_s3(uri) else uri

    def _uri_of(self, fs_path: str) -> str:
        return f"s3://{fs_path}" if self.is_s3 else fs_path

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
        """A seekable binary reader of the file at `uri`.

        On S3 every read of pyarrow's file is its own ranged GET, so small reads (a WARC record
        header, then its body) would cost one request each; the reader is buffered so that a
        scan in offset order costs one request per `S3_READ_BUFFER_BYTES`.
        """
        raw = retried(lambda: self.fs.open_input_file(self._fs_path(uri)))
        if is_s3(uri):
            return S3ReadAhead(raw)  # type: ignore[return-value]
        return raw  # type: ignore[return-value]

    def read_bytes(self, uri: str) -> bytes:
        """The whole content of the file at `uri`."""

        def read() -> bytes:
            with self.fs.open_input_file(self._fs_path(uri)) as f:
                return f.read()

        return retried(read)

    def read_range(self, uri: str, offset: int, length: int) -> bytes:
        """`length` bytes of the file at `uri`, starting at `offset`."""

        def read() -> bytes:
            with self.fs.open_input_file(self._fs_path(uri)) as f:
                f.seek(offset)
                return f.read(length)

        return retried(read)

    def _infos(self, prefix_uri: str, recursive: bool) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self._fs_path(prefix_uri), recursive=recursive, allow_not_found=True)
        return retried(lambda: self.fs.get_file_info(selector))

    def list_files(self, prefix_uri: str, recursive: bool = True) -> list[str]:
        """URIs of the files below `prefix_uri`, sorted."""
        infos = self._infos(prefix_uri, recursive)
        return sorted(self._uri_of(i.path) for i in infos if i.type == pafs.FileType.File)

    def stat_files(self, prefix_uri: str) -> list[tuple[str, int, int]]:
        """(uri, size, mtime in ns) of every file below `prefix_uri`, sorted by uri."""
        infos = self._infos(prefix_uri, recursive=True)
        return sorted(
            (self._uri_of(i.path), int(i.size or 0), int(i.mtime_ns or 0))
            for i in infos
            if i.type == pafs.FileType.File
        )

    def list_dirs(self, prefix_uri: str) -> list[str]:
        """Names of the immediate sub-folders of `prefix_uri`, sorted."""
        infos = self._infos(prefix_uri, recursive=False)
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def read_table(self, uri: str, columns: list[str] | None = None) -> pa.Table:
        """The Parquet table at `uri`."""
        return retried(lambda: pq.read_table(self._fs_path(uri), columns=columns, filesystem=self.fs))

    def dataset(self, uri: str | Sequence[str]) -> ds.Dataset:
        """The Parquet file or folder at `uri` (or the files `uri` lists) as a lazily read pyarrow dataset."""
        path = self._fs_path(uri) if isinstance(uri, str) else [self._fs_path(u) for u in uri]
        return ds.dataset(path, filesystem=self.fs, format="parquet")

    # --- writing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def atomic_output(self, uri: str) -> Iterator[BinaryIO]:
        """A writer whose content appears at `uri` only when the block exits cleanly."""
        if is_s3(uri):
            bucket, key = split_s3_uri(uri)
            writer = S3MultipartWriter(self.s3_client, bucket, key)
            try:
                yield writer  # type: ignore[misc]
                writer.commit()
            except BaseException:
                writer.abort()
                raise
            return
        final = self._fs_path(uri)
        parent, name = final.rsplit("/", 1)
        tmp = f"{parent}/.tmp-{name}-{uuid.uuid4().hex}"
        retried(lambda: self.fs.create_dir(parent, recursive=True))
        sweep_stale_temp_files(parent, ".tmp-")
        try:
            with self.fs.open_output_stream(tmp) as out:
                yield out  # type: ignore[misc]
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

    def delete_dir(self, uri: str) -> None:
        """Remove the folder at `uri` and everything below it, if it exists.

        On S3 every object under the prefix is deleted with boto3: pyarrow's `delete_dir` leaves an empty
        marker object for the parent "folder" behind, which would then show up in listings of the lake."""
        if not self.is_s3:
            with contextlib.suppress(FileNotFoundError):
                retried(lambda: self.fs.delete_dir(self._fs_path(uri)))
            return
        bucket, key = split_s3_uri(uri)
        pages = self.s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/")
        for page in pages:
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                retried(lambda keys=keys: self.s3_client.delete_objects(Bucket=bucket, Delete={"Objects": keys}))

    def move(self, src: str, dst: str) -> None:
        """Move the file at `src` to `dst`, replacing it (local: a rename; S3: a server-side copy, then a delete)."""
        if not self.is_s3:
            parent = self._fs_path(dst).rsplit("/", 1)[0]
            retried(lambda: self.fs.create_dir(parent, recursive=True))
            sweep_stale_temp_files(parent, ".tmp-")
        retried(lambda: self.fs.move(self._fs_path(src), self._fs_path(dst)))

    def copy_file_in(self, local_path: str, uri: str, chunk: int = 8 << 20) -> None:
        """Copy a local file to `uri` atomically."""

        def copy() -> None:
            with open(local_path, "rb") as src, self.atomic_output(uri) as out:
                while block := src.read(chunk):
                    out.write(block)

        retried(copy)
