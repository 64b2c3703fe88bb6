"""Test-only fault injection: a local pyarrow filesystem whose first N calls of chosen kinds fail.

`FaultyLocalFS(plan)` wraps `pyarrow.fs.LocalFileSystem`; `plan` maps an operation to how many of its
next calls raise a transient `ConnectionResetError` (an OSError, as pyarrow's S3 filesystem raises):

- `open_output`: opening a file for writing fails;
- `write`: the stream opens and accepts the first half of its first write, then fails (a torn write);
- `move`: the rename into place fails;
- `open_input`: opening a file for reading fails;
- `info`: a stat/list call fails.

`calls` counts every call per operation, `failed` the injected failures, `published` the final paths
renamed into place, so tests can assert that nothing was written twice.
"""

from collections import Counter
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

FAULT = "connection reset by peer (injected fault)"


class _TornWriter:
    """A writable file that takes half of the first write, then fails like a dropped connection."""

    def __init__(self, inner: pa.NativeFile) -> None:
        self.inner, self.closed = inner, False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.inner.write(view[: len(view) // 2])
        raise ConnectionResetError(FAULT)

    def flush(self) -> None:
        self.inner.flush()

    def tell(self) -> int:
        return self.inner.tell()

    def close(self) -> None:
        self.closed = True
        self.inner.close()


class FaultyHandler(pafs.FileSystemHandler):
    """pyarrow's local filesystem with scheduled transient failures (see the module docstring)."""

    def __init__(self, plan: Mapping[str, int]) -> None:
        self.fs = pafs.LocalFileSystem()
        self.plan: Counter[str] = Counter(plan)
        self.calls: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.published: list[str] = []

    def _maybe_fail(self, op: str) -> None:
        self.calls[op] += 1
        if self.plan[op] > 0:
            self.plan[op] -= 1
            self.failed[op] += 1
            raise ConnectionResetError(f"{op}: {FAULT}")

    def __eq__(self, other: object) -> bool:
        return other is self

    def __ne__(self, other: object) -> bool:
        return other is not self

    def get_type_name(self) -> str:
        return "faulty-local"

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        self._maybe_fail("info")
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        self._maybe_fail("info")
        return self.fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the root directory's contents")

    def delete_file(self, path: str) -> None:
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._maybe_fail("move")
        self.fs.move(src, dest)
        self.published.append(dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        self._maybe_fail("open_input")
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        self._maybe_fail("open_input")
        return self.fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        self._maybe_fail("open_output")
        out = self.fs.open_output_stream(path, metadata=metadata)
        self.calls["write"] += 1
        if self.plan["write"] > 0:
            self.plan["write"] -= 1
            self.failed["write"] += 1
            return pa.PythonFile(_TornWriter(out), mode="w")
        return out

    def open_append_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        return self.fs.open_append_stream(path, metadata=metadata)


def faulty_fs(plan: Mapping[str, int]) -> tuple[pafs.PyFileSystem, FaultyHandler]:
    """A pyarrow filesystem over local disk that fails on schedule, and its handler (for the counters)."""
    handler = FaultyHandler(plan)
    return pafs.PyFileSystem(handler), handler
