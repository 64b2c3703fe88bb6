"""`make test` on pytest-xdist workers: whole files, the files of a costly fixture as one group, costly groups first."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FileOrGroupScheduling

REPO = Path(__file__).resolve().parents[2]
# Prints each collected test's xdist_group after tests/conftest.py has grouped and ordered them.
SHOW_GROUPS = """
import pytest

@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    for item in items:
        group = item.get_closest_marker("xdist_group")
        print("GROUP", item.nodeid, group.args[0] if group else "-")
"""


@pytest.mark.parametrize(
    ("nodeid", "scope"),
    [
        ("tests/unit/test_drops.py::test_a", "tests/unit/test_drops.py"),
        ("tests/unit/test_drops.py::TestDrops::test_b[x-1]", "tests/unit/test_drops.py"),
        ("tests/e2e/test_demo.py::test_demo@sample_demo", "sample_demo"),
        ("tests/unit/test_drops.py::test_a[user@host]", "tests/unit/test_drops.py"),  # an `@` in a parameter
    ],
    ids=["function", "method", "group", "at-in-parameter"],
)
def test_a_test_is_scheduled_with_its_file_or_its_group(nodeid: str, scope: str) -> None:
    scheduler = FileOrGroupScheduling.__new__(FileOrGroupScheduling)  # splitting a nodeid needs no workers
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
    rows = [line[6:].rsplit(" ", 1) for line in out.stdout.splitlines() if line.startswith("GROUP ")]
    groups = {nodeid.split("::")[0]: group for nodeid, group in rows}
    order = list(dict.fromkeys(nodeid.split("::")[0] for nodeid, _ in rows))
    assert order == [files[3], files[2], files[4], files[1], files[0]]  # the clusters' files keep their order
    assert groups == {files[0]: "-", files[1]: "-", files[2]: "clusters", files[3]: "sample_demo", files[4]: "clusters"}
    assert all(group == groups[nodeid.split("::")[0]] for nodeid, group in rows)  # every test of a file
