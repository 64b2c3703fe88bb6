"""The local engine's pool processes end with their driver, even when it is killed and cannot shut them down."""

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DRIVER = """
from mmrecipe.engine import LocalEngine
from tests.unit.test_local_engine_pool import report_and_wait
if __name__ == "__main__":
    LocalEngine(2).map(report_and_wait, range(2))
"""


def report_and_wait(_: int) -> None:
    """A long task that says which process runs it (pool processes share the driver's stdout)."""
    print(os.getpid(), flush=True)
    time.sleep(120)


def _alive(pids: set[int]) -> set[int]:
    """Those of `pids` that are running (not gone, not zombies)."""
    alive = set()
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z":
            alive.add(pid)
    return alive


def test_a_killed_driver_takes_its_pool_processes_with_it() -> None:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    try:
        workers = {int(driver.stdout.readline()) for _ in range(2)}  # type: ignore[union-attr]
        assert len(workers) == 2 and _alive(workers) == workers and driver.pid not in workers
    finally:
        driver.kill()  # SIGKILL: the driver cannot shut its pool down
        driver.wait()
    deadline = time.monotonic() + 30
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(workers), "pool processes outlived their killed driver"
