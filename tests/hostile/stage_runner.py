"""Test-only child process: materialize a drop's stages one by one and report counts, checks and memory.

Run as `python -m tests.hostile.stage_runner --drop D --summary OUT.json [--assets a,b] [--kill-at OP:PATH]`
with MMRECIPE_HOME set, or as `... --serve`: a fork server that imports once and forks one such child per
request (tests/hostile/harness.py's `run_child` uses it). It uses the persistent SQLite instance at
`$MMRECIPE_HOME/dagster`, so the parent test can read the event log afterwards.

- Memory: before each asset the kernel's peak-RSS mark is reset (`/proc/self/clear_refs` = 5), so the
  `peak_kb` reported per asset is that asset's own high-water mark (VmHWM), models included.
- Tracing: the lake's pyarrow filesystem is wrapped (test-only monkeypatch of `Storage.fs`, never in
  production code) so that every file opened for writing and every rename into place is logged to
  `<summary>.trace.jsonl` as it happens.
- Crash injection: `--kill-at write:REL` sends SIGKILL to this process halfway through the first write
  to the temporary file that will become lake-relative path REL (an `fnmatch` pattern: staged parts have
  run-specific folders); `--kill-at rename:REL` kills it just
  before that temporary file is renamed to REL; `--kill-at fail:REL` makes every write to REL fail
  halfway with a connection error (an outage that outlasts every retry).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from mmrecipe.storage import Storage
from resources.settings import environment_settings

TMP_NAME = re.compile(r"^\.tmp-(?P<name>.+)-[0-9a-f]{32}$")


# The hostile drop holds a handful of ordinary pages among its hostile records, and the assertions need them kept.
# The classifier's cut drops the bottom 10 % of the crawl's score distribution, which on so few ordinary pages
# can be one of them; this suite tests input robustness, so it keeps every scored page (the cut itself is tested
# in tests/unit/test_text_pipeline.py and the sample-drop tests).
HOSTILE_RUN_CONFIG: dict[str, dict[str, Any]] = {
    "filtered_text": {"ops": {"filtered_text": {"config": {"quality_drop_below_percentile": 0.0}}}},
}


def final_name(rel: str) -> str:
    """The published lake-relative path a temporary file `.../.tmp-NAME-<uuid>` becomes."""
    head, _, base = rel.rpartition("/")
    m = TMP_NAME.match(base)
    return f"{head}/{m['name']}" if m and head else (m["name"] if m else rel)


class _KillHalfway:
    """A writable file that passes half of its first non-empty write through, flushes, then SIGKILLs us."""

    def __init__(self, inner: pa.NativeFile) -> None:
        self.inner = inner
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if len(view):
            self.inner.write(view[: max(1, len(view) // 2)])
            self.inner.flush()  # the bytes are in the kernel now: they outlive the process
            os.kill(os.getpid(), signal.SIGKILL)
        return len(view)

    def flush(self) -> None:
        self.inner.flush()

    def tell(self) -> int:
        return self.inner.tell()

    def close(self) -> None:
        self.closed = True
        self.inner.close()


class _FailHalfway(_KillHalfway):
    """A writable file whose every write stores half its bytes, then fails like a dropped connection."""

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.inner.write(view[: len(view) // 2])
        raise ConnectionResetError("connection reset by peer (injected by the test runner)")


class TracingHandler(pafs.FileSystemHandler):
    """The local filesystem, logging writes and renames below `root` and killing at one chosen point."""

    def __init__(self, root: str, trace_path: str, kill_at: tuple[str, str] | None) -> None:
        self.fs = pafs.LocalFileSystem()
        self.root = root.rstrip("/") + "/"
        self.trace_path = trace_path
        self.kill_at = kill_at
        self.asset = ""

    def _rel(self, path: str) -> str:
        return path[len(self.root) :] if path.startswith(self.root) else path

    def _log(self, op: str, path: str, **extra: str) -> None:
        with open(self.trace_path, "a") as f:
            f.write(json.dumps({"asset": self.asset, "op": op, "path": self._rel(path), **extra}) + "\n")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TracingHandler) and other.root == self.root

    def __ne__(self, other: object) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return "tracing-local"

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._log("delete_dir", path)
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._log("delete_dir_contents", path)
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the root directory's contents")

    def delete_file(self, path: str) -> None:
        self._log("delete", path)
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._log("move", dest, src=self._rel(src))
        if self.kill_at == ("rename", self._rel(dest)):
            os.kill(os.getpid(), signal.SIGKILL)
        self.fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self._log("copy", dest, src=self._rel(src))
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self.fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        self._log("open", path)
        out = self.fs.open_output_stream(path, metadata=metadata)
        if (
            self.kill_at
            and self.kill_at[0] == "write"
            and fnmatch.fnmatch(final_name(self._rel(path)), self.kill_at[1])
        ):
            return pa.PythonFile(_KillHalfway(out), mode="w")
        if self.kill_at == ("fail", final_name(self._rel(path))):
            return pa.PythonFile(_FailHalfway(out), mode="w")
        return out

    def open_append_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        self._log("append", path)
        return self.fs.open_append_stream(path, metadata=metadata)


def install_tracing(lake: str, trace_path: str, kill_at: tuple[str, str] | None) -> TracingHandler:
    """Make every local Storage below `lake` use a tracing filesystem (test-only monkeypatch)."""
    handler = TracingHandler(os.path.abspath(lake), trace_path, kill_at)
    original = Storage.fs

    def fs(self: Storage) -> pafs.FileSystem:
        if self._fs is None and not self.is_s3 and (self.root + "/").startswith(handler.root):
            self._fs = pafs.PyFileSystem(handler)
        return original.fget(self)  # type: ignore[attr-defined]

    Storage.fs = property(fs)  # type: ignore[assignment,method-assign]
    return handler


def _memory_kb(field: str) -> int:
    m = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(m.group(1)) if m else 0


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _plain(value: Any) -> Any:
    value = getattr(value, "value", value)
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _error_chain(error: Any) -> str:
    """`step: Class: message` of a step failure and every exception that caused it."""
    parts = []
    while error is not None:
        parts.append(f"{error.cls_name}: {error.message.strip()}")
        error = error.cause
    return " <- ".join(parts)


def ordered_assets(defs: Any, wanted: list[str] | None) -> list[tuple[str, bool]]:
    """(asset, partitioned by drop) in run order: `wanted` exactly, or every drop stage and what it needs."""
    import dagster as dg

    graph = defs.resolve_asset_graph()
    needed: set[dg.AssetKey] = set()
    if wanted:  # exactly these, no upstream
        needed = {k for k in graph.get_all_asset_keys() if k.to_user_string() in wanted}
    todo = [] if wanted else [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "drop_stages"]
    while todo:
        key = todo.pop()
        if key in needed:
            continue
        needed.add(key)
        todo += [p for p in graph.get(key).parent_keys if graph.has(p)]
    order: list[dg.AssetKey] = []
    while len(order) < len(needed):
        ready = sorted(
            (k for k in needed - set(order) if all(p in order or p not in needed for p in graph.get(k).parent_keys)),
            key=lambda k: k.to_user_string(),
        )
        order += ready[:1]
    return [(k.to_user_string(), graph.get(k).partitions_def is not None) for k in order]


def run(drop: str, summary_path: str, assets: list[str] | None, kill_at: tuple[str, str] | None) -> dict:
    import dagster as dg

    from data_assets.definitions import build_defs

    settings = environment_settings()
    trace_path = summary_path + ".trace.jsonl"
    handler = install_tracing(settings.lake, trace_path, kill_at)
    os.makedirs(settings.dagster_home, exist_ok=True)
    instance = dg.DagsterInstance.from_config(settings.dagster_home)
    if not instance.has_dynamic_partition("drops", drop):
        instance.add_dynamic_partitions("drops", [drop])
    defs = build_defs(settings)
    drop_job = defs.resolve_job_def("drop_stages_job")
    secret_names = sorted(k for k in os.environ if re.search(r"SECRET|PASSWORD|TOKEN", k))  # names only
    report: dict[str, Any] = {"drop": drop, "assets": [], "pid": os.getpid(), "secret_env_names": secret_names}
    for asset, partitioned in ordered_assets(defs, assets):
        handler.asset = asset
        key = dg.AssetKey(asset)
        _reset_peak_rss()
        before, started = _memory_kb("VmRSS"), time.perf_counter()
        if partitioned:
            result = drop_job.execute_in_process(
                instance=instance,
                partition_key=drop,
                asset_selection=[key],
                run_config=HOSTILE_RUN_CONFIG.get(asset, {}),
                raise_on_error=False,
            )
        else:
            job = defs.resolve_implicit_job_def_def_for_assets([key])
            result = job.execute_in_process(instance=instance, asset_selection=[key], raise_on_error=False)
        mats = [
            e.event_specific_data.materialization  # type: ignore[union-attr]
            for e in result.all_events
            if e.is_step_materialization and e.asset_key == key
        ]
        errors = [_error_chain(e.step_failure_data.error) for e in result.all_events if e.is_step_failure]
        report["assets"].append(
            {
                "asset": asset,
                "partitioned": partitioned,
                "success": result.success,
                "run_id": result.run_id,
                "seconds": round(time.perf_counter() - started, 2),
                "rss_before_kb": before,
                "peak_kb": _memory_kb("VmHWM"),
                "metadata": {k: _plain(v) for k, v in (mats[-1].metadata.items() if mats else [])},
                "checks": [
                    {"name": ev.check_name, "passed": ev.passed, "severity": str(ev.severity)}
                    for ev in result.get_asset_check_evaluations()
                ],
                "errors": errors,
            }
        )
        Path(summary_path).write_text(json.dumps(report, indent=1))
    return report


def serve() -> int:
    """Fork server: import the code location once, then run each request in a forked child.

    A request is one JSON line on stdin: {"argv", "env", "cwd", "stdout", "stderr"} (the last two: file paths).
    The child takes exactly `env` as its environment, writes its output to the two files and runs `main(argv)`;
    the answer is one JSON line on stdout, {"returncode": ...} (negative: killed by that signal), as for a fresh
    interpreter, which would spend seconds importing dagster, torch and the stages before doing the same.
    """
    import data_assets.definitions  # noqa: F401 - what every child would import again
    from resources.settings import deployment_settings

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: never returns into this loop
            code = 1
            try:
                for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
                os.environ.clear()
                os.environ.update(request["env"])
                os.chdir(request["cwd"])
                deployment_settings.cache_clear()  # read the request's environment, not the server's
                code = main(request["argv"])
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drop", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument(
        "--assets",
        default="",
        help="exactly these assets, comma-separated (default: every drop stage and its upstream)",
    )
    parser.add_argument("--kill-at", default="", help="write:REL, rename:REL or fail:REL (lake-relative path)")
    args = parser.parse_args(argv)
    kill = tuple(args.kill_at.split(":", 1)) if args.kill_at else None
    run(args.drop, args.summary, [a for a in args.assets.split(",") if a] or None, kill)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(serve() if sys.argv[1:] == ["--serve"] else main())
