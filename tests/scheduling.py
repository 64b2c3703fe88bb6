"""The suite's schedule on pytest-xdist workers (`make test`): which test files run together, and in what order.

Each worker takes whole test files, so a module's fixture is built once. The files using a fixture of
`COSTLY_GROUPS` (in any test) run as that group on one worker: a session fixture among them is built once, and the
multi-process servers (`dagster dev` with chromium, the Ray cluster) never run side by side. The groups start first,
in their order (longest first), then the other slow files, then the fast ones, so that the workers finish together.

xdist's own `--dist loadgroup` (3.8.0) marks groups by setting `item._nodeid`, which pytest 9 no longer reads (it
keeps node ids in `_id`), so its `xdist_group` marks group nothing. Instead each worker writes the groups it collected
to a file named in its `workerinput`, and the controller's scheduler reads it once every worker has collected.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadFileScheduling

COSTLY_GROUPS = {
    "sample_demo": ("sample_demo",),
    "clusters": ("ui_server", "ray_cluster"),
    "hostile": ("hostile_corpus",),
}
GROUPS_FILE = "mmrecipe_file_groups"  # the workerinput key: where a worker writes {file: group}
GROUPS_KEY = pytest.StashKey[Path]()


def file_of(nodeid: str) -> str:
    """The test file part of a node id."""
    return nodeid.split("::", 1)[0]


def group_and_order(items: list[pytest.Item]) -> dict[str, str]:
    """Sort `items` (costly groups, slow files, fast files; files keep their order) and return {file: group}."""
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(file_of(item.nodeid), []).append(item)
    groups, rank = {}, {}
    for file, file_items in by_file.items():
        used = set().union(*(getattr(i, "fixturenames", ()) for i in file_items))
        group = next((g for g, fixtures in COSTLY_GROUPS.items() if used.intersection(fixtures)), None)
        if group:
            groups[file] = group
        is_slow = any(i.get_closest_marker("slow") for i in file_items)
        rank[file] = list(COSTLY_GROUPS).index(group) if group else len(COSTLY_GROUPS) + (0 if is_slow else 1)
    items.sort(key=lambda item: rank[file_of(item.nodeid)])  # stable
    return groups


def groups_file(config: pytest.Config) -> Path:
    """On the controller: the file the workers write their groups to (in a temp folder of this session)."""
    if GROUPS_KEY not in config.stash:
        config.stash[GROUPS_KEY] = Path(tempfile.mkdtemp(prefix="pytest-file-groups-")) / "groups.json"
    return config.stash[GROUPS_KEY]


def remove_groups_file(config: pytest.Config) -> None:
    """On the controller, at the end of the session: its temp folder goes."""
    if GROUPS_KEY in config.stash:
        shutil.rmtree(config.stash[GROUPS_KEY].parent, ignore_errors=True)


def write_groups(config: pytest.Config, groups: dict[str, str]) -> None:
    """On an xdist worker: the files' groups, for the controller's scheduler (atomically; every worker the same)."""
    path = getattr(config, "workerinput", {}).get(GROUPS_FILE)
    if path:
        tmp = f"{path}.{os.getpid()}"
        Path(tmp).write_text(json.dumps(groups))
        os.replace(tmp, path)


class FileGroupScheduling(LoadFileScheduling):
    """`--dist loadfile` where the files of one costly group are one unit of work."""

    def __init__(self, config: pytest.Config, log: Any = None, groups_path: Path | None = None) -> None:
        super().__init__(config, log)
        self.groups_path = groups_path
        self.groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self.groups is None:  # first called once every worker has collected (and written the file)
            path = self.groups_path
            self.groups = json.loads(path.read_text()) if path and path.exists() else {}
        file = file_of(nodeid)
        return self.groups.get(file, file)
