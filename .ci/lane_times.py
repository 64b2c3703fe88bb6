"""The test suite's time by lane, from pytest's junit XML (each test case carries its `lane` property).

Under pytest-xdist (`make test`) the lanes' sums are the workers' time; the session's wall time is printed too."""

import sys
import xml.etree.ElementTree as ET
from collections import Counter


def lane_times(junit_path: str) -> tuple[Counter[str], Counter[str]]:
    """(seconds, test count) per lane; setup and teardown count towards the test that ran them."""
    seconds: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for case in ET.parse(junit_path).iter("testcase"):
        lane = next((p.get("value") for p in case.iter("property") if p.get("name") == "lane"), "unknown")
        seconds[lane] += float(case.get("time") or 0)
        counts[lane] += 1
    return seconds, counts


def wall_seconds(junit_path: str) -> float:
    """The session's wall time: the test suites' own `time` (one suite per pytest run, workers included)."""
    return sum(float(suite.get("time") or 0) for suite in ET.parse(junit_path).iter("testsuite"))


if __name__ == "__main__":
    seconds, counts = lane_times(sys.argv[1])
    print("\ntest time by lane (sum of test durations):")
    for lane, n, s in [*((lane, counts[lane], seconds[lane]) for lane in sorted(seconds)),
                       ("total", sum(counts.values()), sum(seconds.values()))]:  # fmt: skip
        print(f"  {lane:<6} {n:>4} tests  {int(s // 60):>3} min {s % 60:4.1f} s")
    wall = wall_seconds(sys.argv[1])
    print(f"  wall          {int(wall // 60):>3} min {wall % 60:4.1f} s (the pytest session, its workers side by side)")
