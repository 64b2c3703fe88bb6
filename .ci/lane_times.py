"""The test suite's wall time by lane, from pytest's junit XML (each test case carries its `lane` property)."""

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


if __name__ == "__main__":
    seconds, counts = lane_times(sys.argv[1])
    print("\ntest time by lane (sum of test durations):")
    for lane, n, s in [*((lane, counts[lane], seconds[lane]) for lane in sorted(seconds)),
                       ("total", sum(counts.values()), sum(seconds.values()))]:  # fmt: skip
        print(f"  {lane:<6} {n:>4} tests  {int(s // 60):>3} min {s % 60:4.1f} s")
