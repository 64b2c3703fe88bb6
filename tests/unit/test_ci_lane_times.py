"""`.ci/run`'s closing summary: the suite's time by lane, read from pytest's junit XML."""

import runpy
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
