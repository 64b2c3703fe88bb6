"""Helpers of the reliability tests: child materializations, lake snapshots and per-case outcomes."""

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrecipe.settings import Settings
from mmrecipe.stage_output import COMMITS, DATA, REJECTS, SIDE, STAGING, read_stage_table, stage_prefix
from mmrecipe.storage import Storage
from tests.hostile.make_hostile_corpus import Case
from tests.hostile.stage_runner import final_name

if TYPE_CHECKING:
    import dagster as dg

REPO = Path(__file__).resolve().parents[2]
# The drop stages this suite knows, and the raw_crawl records each takes as input (None: all spans).
STAGE_KIND: dict[str, str | None] = {
    "raw_crawl": None,
    "filtered_text": "html",
    "extracted_text": "html",
    "deduped_images": "image",
    "transcribed_audio": "audio",
    "video_clips": "video",
}
# Set to a random value in the clean run's environment; none of it may reach logs, metadata or outputs.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DAGSTER_PG_PASSWORD", "PGPASSWORD", "HF_TOKEN")
REASON_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
GENERIC_REASONS = {"error", "exception", "failed", "failure", "unknown", "other", "crash", "bad"}


def home_settings(home: Path) -> Settings:
    """Settings of an isolated MMRECIPE_HOME (embedded default), with its folders created."""
    settings = Settings.from_env({"MMRECIPE_HOME": str(home)})
    for d in (settings.lake, settings.landing, settings.dagster_home):
        os.makedirs(d, exist_ok=True)
    return settings


def child_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child materialization: this process's minus mmrecipe/Dagster settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMRECIPE_", "DAGSTER_"))}
    env |= {
        "MMRECIPE_HOME": settings.home,
        "MMRECIPE_TMP": os.path.join(settings.home, "tmp"),
        "MMRECIPE_STEP_RETRIES": "0",  # deterministic failures must show at once, not after backoff
        "PYTHONPATH": str(REPO),
    }
    return env | dict(extra or {})


@dataclass
class ChildRun:
    """What a child materialization did: exit code, per-asset summary, write trace and output."""

    returncode: int
    summary: dict[str, Any]
    trace: list[dict[str, str]]
    stdout: str
    stderr: str
    seconds: float
    summary_path: Path = field(default=Path())

    def asset(self, name: str) -> dict[str, Any]:
        return next(a for a in self.summary.get("assets", []) if a["asset"] == name)

    @property
    def killed(self) -> bool:
        return self.returncode == -9


class StageRunnerServer:
    """`python -m tests.hostile.stage_runner --serve` (in its own process group): one child process per request."""

    def __init__(self) -> None:
        self.home = tempfile.mkdtemp(prefix="stage-runner-")  # the server's own (unused) MMRECIPE_HOME
        idle = Settings.from_env({"MMRECIPE_HOME": self.home})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile.stage_runner", "--serve"], cwd=REPO, env=child_env(idle),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip

    def run(self, argv: list[str], env: Mapping[str, str], out: Path, timeout: float) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of `stage_runner.main(argv)` in a child with exactly `env`."""
        stdout, stderr = out.with_suffix(".stdout"), out.with_suffix(".stderr")
        request = {"argv": argv, "env": dict(env), "cwd": str(REPO), "stdout": str(stdout), "stderr": str(stderr)}
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise TimeoutError(f"the stage runner child did not finish within {timeout:.0f}s: {argv}")
        answer = self.process.stdout.readline()
        assert answer, f"the stage runner server died ({self.process.poll()})"
        return json.loads(answer)["returncode"], stdout.read_text(), stderr.read_text()

    def close(self) -> None:
        """Stop the server and any child it still runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


_SERVER: list[StageRunnerServer] = []  # started by the first run_child, stopped by close_stage_runner


def close_stage_runner() -> None:
    while _SERVER:
        _SERVER.pop().close()


def run_child(
    settings: Settings,
    drop: str,
    assets: Iterable[str] = (),
    kill_at: str = "",
    env: Mapping[str, str] | None = None,
    tag: str = "run",
    timeout: float = 900,
) -> ChildRun:
    """Materialize `assets` (default: every drop stage and its upstream) of `drop` in a child process.

    The child is forked from a server that has already imported the code location (StageRunnerServer): a
    process of its own, with exactly the environment it is given, that a kill ends alone."""
    out = Path(settings.home) / "runs"
    out.mkdir(parents=True, exist_ok=True)
    n = len(list(out.glob("*.json"))) + len(list(out.glob("*.killed")))
    summary = out / f"{n:02d}-{tag}.json"
    argv = ["--drop", drop, "--summary", str(summary)]
    argv += ["--assets", ",".join(assets)] if assets else []
    argv += ["--kill-at", kill_at] if kill_at else []
    if not _SERVER:
        _SERVER.append(StageRunnerServer())
    started = time.perf_counter()
    returncode, stdout, stderr = _SERVER[0].run(argv, child_env(settings, env), summary, timeout)
    seconds = time.perf_counter() - started
    if returncode == -9:
        (out / f"{n:02d}-{tag}.killed").write_text(kill_at)
    trace_path = Path(str(summary) + ".trace.jsonl")
    trace = [json.loads(line) for line in trace_path.read_text().splitlines()] if trace_path.exists() else []
    data = json.loads(summary.read_text()) if summary.exists() else {}
    return ChildRun(returncode, data, trace, stdout, stderr, seconds, summary)


def is_temporary(rel: str) -> bool:
    """Whether a lake path is a writer's temporary file (hidden, never read by pyarrow.dataset) or a staged part
    (under `<asset>/staging/`, moved in by the partition's commit)."""
    parts = rel.split("/")
    return any(part.startswith(".tmp-") for part in parts) or (len(parts) > 1 and parts[1] == STAGING)


def lake_files(lake: str | Path) -> dict[str, str]:
    """sha256 of every published (non-temporary) file in the lake, by lake-relative path."""
    root = Path(lake)
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if not is_temporary(rel):
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def temporary_files(lake: str | Path) -> dict[str, int]:
    """Leftover temporary files in the lake and their sizes, by lake-relative path."""
    root = Path(lake)
    found = {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}
    return {rel: size for rel, size in sorted(found.items()) if is_temporary(rel)}


def commit_file(stage: str, drop: str) -> str:
    """The lake-relative path of a stage partition's commit file."""
    return f"{stage}/{COMMITS}/{drop}.json"


def partition_files(files: Mapping[str, str], stages: Iterable[str], drop: str) -> tuple[dict, dict]:
    """(files of the drop's partition of the given stages in every tree, every other lake file such as models)."""
    prefixes = tuple(f"{stage_prefix(s, drop, tree)}/" for s in stages for tree in (DATA, REJECTS, SIDE))
    commits = {commit_file(s, drop) for s in stages}
    own = {k: v for k, v in files.items() if k.startswith(prefixes) or k in commits}
    return own, {k: v for k, v in files.items() if k not in own}


@dataclass(frozen=True)
class Outcome:
    """Where one input record ended up in a stage: kept, or dropped/rejected with a reason."""

    status: str  # "kept" | "dropped" | "rejected" | "missing"
    reason: str = ""
    detail: str = ""
    count: int = 1

    def label(self) -> str:
        return self.status if self.status in ("kept", "missing") else f"{self.status}:{self.reason}"


def record_ids_by_span(lake: str | Path, drop: str) -> dict[tuple[str, int], str]:
    """raw_crawl's record_id of every span of the drop, by (WARC file name, offset)."""
    ids = {}
    for tree in (DATA, REJECTS):
        table = read_stage_table(Storage(str(lake)), "raw_crawl", drop, tree, ["record_id", "warc_path", "warc_offset"])
        for r in table.to_pylist():
            ids[(os.path.basename(r["warc_path"]), r["warc_offset"])] = r["record_id"]
    return ids


def stage_outcomes(lake: str | Path, stage: str, drop: str) -> dict[str, list[Outcome]]:
    """Every record_id in a stage partition's kept rows and rejects, with its outcome(s)."""
    lake_storage = Storage(str(lake))
    found: dict[str, list[Outcome]] = {}
    for rid in read_stage_table(lake_storage, stage, drop, columns=["record_id"])["record_id"].to_pylist():
        found.setdefault(rid, []).append(Outcome("kept"))
    for r in read_stage_table(lake_storage, stage, drop, REJECTS).to_pylist():
        found.setdefault(r["record_id"], []).append(Outcome(r["outcome"], r["reason"], r["detail"] or ""))
    return found


def case_outcome(outcomes: Mapping[str, list[Outcome]], record_id: str) -> Outcome:
    """The single outcome of one record (status "missing" if absent; count > 1 if it appears twice)."""
    seen = outcomes.get(record_id, [])
    if not seen:
        return Outcome("missing")
    first = seen[0]
    return Outcome(first.status, first.reason, first.detail, len(seen))


def cases_of(cases: Iterable[Case], drop: str) -> list[Case]:
    return [c for c in cases if c.drop == drop]


@dataclass
class CorpusDir:
    """Where the session's hostile corpus was generated, and its cases."""

    root: Path
    cases: list[Case]

    def drop_dir(self, drop: str) -> Path:
        return self.root / "drops" / drop


@dataclass
class KillResult:
    """A re-run of one stage SIGKILLed halfway through writing `target`, and the lake it left."""

    stage: str
    target: str
    run: ChildRun
    files: dict[str, str]  # published lake files right after the kill
    temporary: dict[str, int]  # leftover temporary files and their sizes right after the kill

    @property
    def torn_file(self) -> str | None:
        """The temporary file the child was writing when it was killed (from its write trace; `target` is a pattern)."""
        trace = self.run.trace
        opened = [t["path"] for t in trace if t["op"] == "open" and fnmatch.fnmatch(final_name(t["path"]), self.target)]
        return opened[-1] if opened else None


@dataclass
class HostileRun:
    """The session's hostile home after a clean materialization of every drop stage."""

    settings: Settings
    run: ChildRun
    secret: str
    stages: list[str]  # drop stages defined in this code location, in run order
    files: dict[str, str]  # lake snapshot after the clean run
    kills: dict[str, KillResult] = field(default_factory=dict)

    @property
    def lake(self) -> Path:
        return Path(self.settings.lake)


def defined_drop_stages(settings: Settings) -> list[str]:
    """The drop-stage assets of the code location, in dependency order (raw_crawl first)."""
    from data_assets.definitions import build_defs

    graph = build_defs(settings).resolve_asset_graph()
    names = {k.to_user_string(): k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "drop_stages"}
    order: list[str] = []
    while len(order) < len(names):
        ready = [
            n
            for n in sorted(names)
            if n not in order
            and {p.to_user_string() for p in graph.get(names[n]).parent_keys} & set(names) <= set(order)
        ]
        if not ready:
            raise AssertionError(f"drop stages {sorted(set(names) - set(order))} depend on each other in a cycle")
        order.append(ready[0])
    return order


def fresh_home(path: Path) -> Settings:
    """An empty MMRECIPE_HOME at exactly `path` (so absolute paths in outputs repeat run after run)."""
    shutil.rmtree(path, ignore_errors=True)
    return home_settings(path)


def adhoc_job(
    settings: Settings, assets: Iterable[str], checks: bool = True, retry_policy: Any = None
) -> "dg.JobDefinition":
    """A job over exactly `assets` (optionally without their checks), bound to the code location's assets,
    checks and resources. Its steps retry as every asset does (`data_assets.jobs.STEP_RETRY_POLICY`);
    `retry_policy` applies only to ops without their own (the checks)."""
    import dagster as dg

    from data_assets.definitions import build_defs

    defs = build_defs(settings)
    selection = dg.AssetSelection.assets(*assets)
    job = dg.define_asset_job("adhoc_job", selection=selection if checks else selection.without_checks(),
                              op_retry_policy=retry_policy)  # fmt: skip
    bound = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, resources=defs.resources, jobs=[job])
    return bound.resolve_job_def("adhoc_job")


def materialize(
    settings: Settings,
    instance: "dg.DagsterInstance",
    drop: str,
    assets: Iterable[str],
    checks: bool = True,
    run_config: Mapping[str, Any] | None = None,
) -> "dg.ExecuteInProcessResult":
    """Materialize `assets` of `drop` in this process (with the assets' step retries); errors are in the result."""
    if not instance.has_dynamic_partition("drops", drop):
        instance.add_dynamic_partitions("drops", [drop])
    job = adhoc_job(settings, assets, checks)
    return job.execute_in_process(
        instance=instance, partition_key=drop, run_config=dict(run_config or {}), raise_on_error=False
    )
