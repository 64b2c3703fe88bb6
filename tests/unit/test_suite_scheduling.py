"""`make test` on pytest-xdist workers: whole files, the files of a costly fixture as one unit, costly groups first."""

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scheduling import FileGroupScheduling

LANE_TIMES = runpy.run_path(str(Path(__file__).resolve().parents[2] / ".ci" / "lane_times.py"))

REPO = Path(__file__).resolve().parents[2]
# After tests/conftest.py has ordered the collected tests: each file (in order) with its group.
SHOW_GROUPS = """
import pytest
from tests import scheduling

@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    groups = scheduling.group_and_order(items)
    for file in dict.fromkeys(scheduling.file_of(i.nodeid) for i in items):
        print("FILE", file, groups.get(file, "-"))
"""


@pytest.mark.parametrize(
    ("nodeid", "scope"),
    [
        ("tests/unit/test_drops.py::test_a", "tests/unit/test_drops.py"),
        ("tests/unit/test_drops.py::TestDrops::test_b[x-1]", "tests/unit/test_drops.py"),
        ("tests/e2e/test_demo.py::test_demo", "sample_demo"),
        ("tests/assets/test_rankings_sample.py::test_diff[a::b]", "sample_demo"),
    ],
    ids=["function", "method", "grouped", "grouped-parameter"],
)
def test_a_test_is_scheduled_with_its_file_or_its_files_group(nodeid: str, scope: str, tmp_path: Path) -> None:
    groups = tmp_path / "groups.json"  # as a worker writes it
    groups.write_text(
        json.dumps({"tests/e2e/test_demo.py": "sample_demo", "tests/assets/test_rankings_sample.py": "sample_demo"})
    )
    scheduler = FileGroupScheduling.__new__(FileGroupScheduling)  # splitting a node id needs no workers
    scheduler.groups_path, scheduler.groups = groups, None
    assert scheduler._split_scope(nodeid) == scope


def test_the_files_of_a_costly_fixture_form_its_group_and_start_first(tmp_path: Path) -> None:
    (tmp_path / "show_groups.py").write_text(SHOW_GROUPS)
    files = [
        "tests/unit/test_drops.py",  # fast
        "tests/e2e/test_definitions.py",  # slow
        "tests/scale/test_ray_task_resources.py",  # fast tests, and slow ones on the Ray cluster
        "tests/e2e/test_demo.py",  # the sample demo
        "tests/ui/test_ui_browser.py",  # dagster dev and chromium: never beside the Ray cluster
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "show_groups", "-p", "no:cacheprovider"]
    out = subprocess.run([*cmd, *files], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("FILE ")]
    assert rows == [  # the clusters' files keep their order
        [files[3], "sample_demo"],
        [files[2], "clusters"],
        [files[4], "clusters"],
        [files[1], "-"],
        [files[0], "-"],
    ]


@pytest.mark.slow  # two pytest-xdist workers start, each importing the suite's conftest
def test_on_two_workers_a_groups_files_share_a_worker_and_every_lane_reaches_the_junit(tmp_path: Path) -> None:
    """`make test`'s options on a small suite that uses this conftest: three files of the `sample_demo` group
    (which here overrides the fixture) run on one worker; the junit the controller writes has every test's lane."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text("from tests.conftest import *  # noqa: F403 (this suite's hooks)\n")
    demo = "import pytest\n\n@pytest.fixture\ndef sample_demo():\n    return None\n\n"
    for name in "abc":
        body = "@pytest.mark.parametrize('i', range(4))\ndef test_x({}i):\n    time.sleep(0.2)\n"
        (suite / f"test_demo_{name}.py").write_text("import time\n" + demo + body.format("sample_demo, "))
        (suite / f"test_plain_{name}.py").write_text("import time\nimport pytest\n\n" + body.format(""))
    junit = tmp_path / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadfile", "--no-loadscope-reorder", "-vv"]
    cmd += ["-p", "no:cacheprovider", f"--junitxml={junit}", "suite"]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}  # CI's own --junitxml stays CI's
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ran = set(re.findall(r"^\[(gw\d)\] .*?PASSED (suite/test_\w+)\.py", done.stdout, re.M))
    demo_workers = {worker for worker, file in ran if "demo" in file}
    assert len(ran) == 6 and len(demo_workers) == 1, done.stdout[-3000:]
    seconds, counts = LANE_TIMES["lane_times"](str(junit))
    assert counts == {"fast": 12, "slow": 12} and seconds["slow"] > 0  # `sample_demo` marks a test slow
    assert LANE_TIMES["wall_seconds"](str(junit)) > 0
