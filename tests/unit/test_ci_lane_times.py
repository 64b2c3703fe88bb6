"""`.ci/run`'s closing summary: the suite's time by lane, read from pytest's junit XML."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LANE_TIMES = runpy.run_path(str(REPO / ".ci" / "lane_times.py"))
lane_times, wall_seconds = LANE_TIMES["lane_times"], LANE_TIMES["wall_seconds"]


def test_time_is_summed_per_lane_property(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    case = '<testcase name="{n}" time="{t}"><properties><property name="lane" value="{lane}"/></properties></testcase>'
    cases = [case.format(n="a", t="1.5", lane="fast"), case.format(n="b", t="60", lane="slow")]
    cases += [case.format(n="c", t="0.5", lane="fast"), '<testcase name="d" time="2"/>']
    junit.write_text(f'<testsuites><testsuite time="40.5">{"".join(cases)}</testsuite></testsuites>')
    seconds, counts = lane_times(str(junit))
    assert seconds == {"fast": 2.0, "slow": 60.0, "unknown": 2.0} and counts == {"fast": 2, "slow": 1, "unknown": 1}
    assert wall_seconds(str(junit)) == 40.5  # two workers: less than the 64 s the tests took together


def test_each_collected_test_carries_its_lane(request: pytest.FixtureRequest) -> None:
    assert ("lane", "fast") in request.node.user_properties  # this test is not marked slow


@pytest.mark.slow  # two pytest-xdist workers start, each importing the suite's conftest
def test_the_lanes_of_a_run_on_xdist_workers_are_read_from_its_junit(tmp_path: Path) -> None:
    """`make test`'s options on two workers: every test's lane reaches the junit the controller writes."""
    junit = tmp_path / "junit.xml"
    tests = ["tests/unit/test_ci_lane_times.py::test_each_collected_test_carries_its_lane"]
    tests += ["tests/unit/test_suite_scheduling.py::test_a_test_is_scheduled_with_its_file_or_its_group"]  # 4
    cmd = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "--no-loadscope-reorder"]
    cmd += ["-p", "no:cacheprovider", f"--junitxml={junit}", *tests]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}  # CI's own --junitxml stays CI's
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seconds, counts = lane_times(str(junit))
    assert counts == {"fast": 5} and seconds["fast"] > 0
    assert wall_seconds(str(junit)) > 0
