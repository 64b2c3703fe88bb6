"""A `dagster dev` server for tests: its own process group on a free port, stopped with SIGTERM on exit."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_path() -> str | None:
    """Debian's chromium if installed (the test never downloads a browser)."""
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")


@dataclass
class DagsterDev:
    """A running `dagster dev`: its URL, process, log file and the environment it was started with."""

    url: str
    process: subprocess.Popen
    log: Path
    env: Mapping[str, str]
    stopped_by: str = ""  # "SIGTERM" (clean shutdown) or "SIGKILL", once stopped

    def graphql(self, query: str, variables: Mapping[str, object] | None = None, timeout: float = 30) -> dict:
        """A GraphQL request to the webserver (used only to wait for state the UI also shows)."""
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            out = json.loads(resp.read())
        if out.get("errors"):
            raise RuntimeError(f"GraphQL errors: {out['errors']}")
        return out["data"]

    def stop(self) -> str:
        """Stop it (once) with `stop_process_group`; how it stopped: "SIGTERM" or "SIGKILL"."""
        if not self.stopped_by:
            self.stopped_by = stop_process_group(self.process)
        return self.stopped_by

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _wait_ready(dev: DagsterDev, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dev.process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {dev.process.returncode}:\n{dev.log_tail()}")
        try:
            data = dev.graphql(
                "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError "
                "{ __typename ... on PythonError { message } } } } } }",
                timeout=5,
            )
            entries = data["workspaceOrError"]["locationEntries"]
            states = [e["locationOrLoadError"] for e in entries]
            if states and all(s and s["__typename"] == "RepositoryLocation" for s in states):
                return
            errors = [s for s in states if s and s["__typename"] == "PythonError"]
            if errors:
                raise RuntimeError(f"the code location failed to load: {errors[0]['message']}")
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, TypeError):
            pass
        time.sleep(1)
    raise TimeoutError(f"dagster dev not ready after {timeout:.0f}s:\n{dev.log_tail()}")


def stop_process_group(process: subprocess.Popen, grace: float = 60, timeout: float = 20) -> str:
    """Stop `dagster dev` and everything it started; how: "SIGTERM" (clean) or "SIGKILL" (after `grace` s).

    dagster dev maps SIGTERM to SIGINT and, on it, sends its webserver and daemon a shutdown message through
    their IPC pipes and waits for them (they stop their code servers). So SIGTERM goes to the leader only:
    sent to the whole group it would also reach the children mid-shutdown. SIGKILL to the group is the fallback.
    Returns once no process of the group is left (or raises after `timeout` more seconds).
    """
    pgid = process.pid  # start_new_session=True made the process its group's leader
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, timeout)):
        with suppress(ProcessLookupError):
            if sig == signal.SIGTERM:
                os.kill(pgid, sig)
            else:
                os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.2)
            if process.poll() is not None and not process_group_alive(pgid):
                return sig.name
    raise RuntimeError(f"processes {process_group_alive(pgid)} of group {pgid} survived SIGKILL")


def process_group_alive(pgid: int) -> list[int]:
    """The pids still in process group `pgid` (Linux /proc), e.g. to prove a server left nothing behind."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp …
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def _default_interrupts() -> None:
    """Undo an inherited SIG_IGN (a background `&` job ignores SIGINT): dagster dev then shuts down on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def dagster_dev(
    home: Path,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 180,
    instance: Mapping[str, object] | None = None,
) -> Iterator[DagsterDev]:
    """`dagster dev -w workspace.yaml` with MMRECIPE_HOME=`home`, DAGSTER_HOME=`home/dagster`; stopped on exit.

    The instance is data_assets/dagster.yaml, with the top-level keys of `instance` added or replaced.
    """
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "data_assets" / "dagster.yaml").read_text()) | dict(instance or {})
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    for sub in ("lake", "landing"):
        (home / sub).mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMRECIPE_", "DAGSTER_"))}
    env.update(
        {"MMRECIPE_HOME": str(home), "DAGSTER_HOME": str(dagster_home), "MMRECIPE_TMP": str(home / "tmp")},
        **(extra_env or {}),
    )
    port = free_port()
    log = home / "dagster-dev.log"
    dagster = str(Path(sys.executable).with_name("dagster"))
    cmd = [dagster, "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop_process_group can always end all of it
            preexec_fn=_default_interrupts,
        )
    dev = DagsterDev(url=f"http://127.0.0.1:{port}", process=process, log=log, env=env)
    try:
        _wait_ready(dev, timeout)
        yield dev
    finally:
        dev.stop()
