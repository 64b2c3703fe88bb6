"""A real multi-node Ray cluster on this machine for the scale-out tests: a head and worker nodes, each its own raylet.

`ray.cluster_utils.Cluster` starts every node as separate processes (GCS, raylet, workers) with its own
resources, exactly as `ray start` would on separate machines. They listen on the machine's own address, not
127.0.0.1: `ray.init` rewrites a loopback address to that one, so a loopback-only cluster is unreachable.
The head runs no tasks (0 CPUs, as in the Helm chart) and serves the dashboard, which answers Ray's state
API (`ray.util.state`). Teardown SIGKILLs whatever a node leaves behind and checks that no process of the
cluster outlives it.
"""

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

T = TypeVar("T")
# Read when ray is first imported (tests/scale/conftest.py imports this module before any test imports ray):
# on a loaded 2-core machine the dashboard, which serves the state API, can need more than Ray's default 60 s.
os.environ.setdefault("RAY_DASHBOARD_STARTUP_TIMEOUT_S", "240")
REPO = Path(__file__).resolve().parents[2]
OBJECT_STORE_BYTES = 80 * 2**20  # per node: small, the tests move paths and counts, not records


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _repo_on_path() -> Iterator[None]:
    """This checkout first on PYTHONPATH while a node starts: its Ray workers import `tests` and the code from here."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved) if p)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def _with_retries(start: Callable[[], T], attempts: int = 3) -> T:
    """`start()` (a node) with this checkout on PYTHONPATH; again if it failed to come up in time.

    On a loaded machine a raylet can miss Ray's fixed 30 s window to register, or the dashboard its start-up
    timeout; the half-started node's processes are SIGKILLed before the next attempt.
    """
    for attempt in range(attempts):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            with _repo_on_path():
                return start()
        except Exception:
            if attempt == attempts - 1:
                raise
            spawned = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
            for p in spawned:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.send_signal(signal.SIGKILL)
            psutil.wait_procs(spawned, timeout=10)
    raise AssertionError("unreachable")


def _pids(node: Any) -> set[int]:
    return {info.process.pid for infos in node.all_processes.values() for info in infos if info.process}


@dataclass
class RayCluster:
    """A running loopback Ray cluster: its address, its dashboard (state API) and its worker nodes."""

    cluster: Any  # ray.cluster_utils.Cluster
    dashboard_url: str
    workers: list[Any] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    @property
    def address(self) -> str:
        """What `RAY_ADDRESS` is set to: the GCS address of the head."""
        return str(self.cluster.address)

    def add_worker(self, cpus: int = 1, gpus: int = 0) -> Any:
        """Start one more worker node (a raylet with `cpus` CPUs and `gpus` declared GPUs) and wait for it."""
        node = _with_retries(
            lambda: self.cluster.add_node(num_cpus=cpus, num_gpus=gpus, object_store_memory=OBJECT_STORE_BYTES)
        )
        self.cluster.wait_for_nodes()
        self.workers.append(node)
        self.pids |= _pids(node)
        return node

    def worker_node_ids(self) -> set[str]:
        """The Ray node ids of the live worker nodes."""
        return {n.node_id for n in self.workers}

    def kill_worker(self, node: Any) -> None:
        """SIGKILL a worker node's raylet and every worker process it started: a machine lost mid-stage."""
        raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
        victims = [raylet, *raylet.children(recursive=True)]
        for p in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=10)
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)

    def live_pids(self) -> set[int]:
        """Processes of this cluster that are still running (raylets, GCS, dashboard, workers)."""
        alive = set()
        for pid in self.pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.add(pid)
            except psutil.NoSuchProcess:
                pass
        return alive


def start_ray_cluster(workers: int = 2, gpus_on_last: int = 1) -> RayCluster:
    """A head (0 CPUs, dashboard) plus `workers` one-CPU nodes; the last declares `gpus_on_last` GPUs."""
    from ray.cluster_utils import Cluster

    dashboard_port = _free_port()
    cluster = _with_retries(
        lambda: Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "include_dashboard": True,
                "dashboard_host": "127.0.0.1",
                "dashboard_port": dashboard_port,
                "object_store_memory": OBJECT_STORE_BYTES,
            },
        )
    )
    rc = RayCluster(cluster, f"http://127.0.0.1:{dashboard_port}")
    rc.pids |= _pids(cluster.head_node)
    try:
        for i in range(workers):
            rc.add_worker(cpus=1, gpus=gpus_on_last if i == workers - 1 else 0)
        _wait_for_state_api(rc)
    except BaseException:
        stop_ray_cluster(rc)
        raise
    return rc


def _wait_for_state_api(rc: RayCluster, timeout: float = 60) -> None:
    from ray.util.state import list_nodes

    deadline = time.monotonic() + timeout
    while True:
        try:
            if len([n for n in list_nodes(address=rc.dashboard_url) if n.state == "ALIVE"]) == 1 + len(rc.workers):
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray's state API at {rc.dashboard_url} did not list every node within {timeout} s")
        time.sleep(0.5)


def stop_ray_cluster(rc: RayCluster) -> set[int]:
    """Shut the cluster down, SIGKILL what is left of it, and return the pids that still ran (should be none)."""
    rc.cluster.shutdown()
    deadline = time.monotonic() + 15
    while rc.live_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    leaked = rc.live_pids()
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return leaked


def ray_cluster_fixture() -> Iterator[RayCluster]:
    """The body of the session fixture: start, yield, stop, and fail if a process of the cluster leaked."""
    rc = start_ray_cluster()
    try:
        yield rc
    finally:
        leaked = stop_ray_cluster(rc)
        assert not leaked, f"Ray processes outlived the cluster's shutdown (killed now): {sorted(leaked)}"
