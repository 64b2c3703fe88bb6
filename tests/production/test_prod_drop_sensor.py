"""The source-drop sensor over a local landing folder and over S3 (moto): the same drops, the same runs.

On S3 the listing is checked at the server: paginated, one level deep, resuming after the cursor,
and not re-reading drops that have not changed.
"""

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from mmrecipe.drops import MANIFEST, manifest_for_folder
from mmrecipe.settings import ScanLimits, Settings
from resources import build_resources
from sensors.source_drops import DropCursor, source_drops
from tests.production.prod_support import RequestLog, S3Server, upload_folder
from tests.warc_fixtures import HttpResponse, warc_bytes

pytestmark = pytest.mark.slow  # real servers and tools: Postgres, moto S3, helm

WARC = warc_bytes([HttpResponse("http://example.org/", b"<html><p>hello</p></html>")])


@dataclasses.dataclass
class Landing:
    """A landing root (local or S3) that tests drop folders into, and the sensor's resources for it."""

    settings: Settings
    scratch: Path
    s3: S3Server | None

    def land(self, name: str, manifest: bool = True) -> None:
        folder = self.scratch / name
        folder.mkdir(parents=True)
        (folder / "crawl-0.warc.gz").write_bytes(WARC)
        if manifest:
            self.add_manifest(name)
        elif self.s3 is not None:
            upload_folder(self.s3, folder, f"landing/{name}")

    def add_manifest(self, name: str) -> None:
        folder = self.scratch / name
        (folder / MANIFEST).write_text(manifest_for_folder(str(folder), name).to_json())
        if self.s3 is not None:
            upload_folder(self.s3, folder, f"landing/{name}")

    def tick(self, instance: dg.DagsterInstance, cursor: str | None) -> tuple[list[str], str]:
        """One sensor evaluation; its partition requests are applied to the instance as the daemon would."""
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=build_resources(self.settings))
        result = source_drops(ctx)
        for req in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        return [r.partition_key for r in result.run_requests], str(result.cursor)


@pytest.fixture(params=["local", "s3"])
def landing(request: pytest.FixtureRequest, settings: Settings) -> Landing:
    settings = dataclasses.replace(settings, sensor=ScanLimits(page_size=2, max_drops_per_tick=3, full_rescan_ticks=3))
    if request.param == "local":
        return Landing(settings, Path(settings.landing), None)
    s3: S3Server = request.getfixturevalue("s3_server")
    s3_settings = dataclasses.replace(settings, landing=f"s3://{s3.bucket}/landing", s3_endpoint_url=s3.endpoint_url)
    return Landing(s3_settings, Path(settings.home) / "scratch", s3)


def _cursor(raw: str) -> dict:
    return json.loads(raw)


def test_drops_are_found_incrementally_with_the_manifest_rule(
    landing: Landing, instance: dg.DagsterInstance, request: pytest.FixtureRequest
) -> None:
    log: RequestLog | None = request.getfixturevalue("s3_requests") if landing.s3 else None
    for name in ("2026-11-01-a", "2026-11-03-c", "2026-11-04-d", "_staging"):
        landing.land(name)
    landing.land("2026-11-02-b", manifest=False)  # upload still in progress
    landing.land("2026-11-00 bad name")  # complete, but not a valid drop name: reported, never started

    # tick 1 lists from the start but may verify only three drops: the bad name and b wait, a starts
    started, cursor = landing.tick(instance, None)
    assert started == ["2026-11-01-a"]
    state = _cursor(cursor)
    assert (state["after"], state["since_full"]) == ("2026-11-02-b", None)  # the full listing is not finished
    assert sorted(state["pending"]) == ["2026-11-00 bad name", "2026-11-02-b"]
    # tick 2 finishes the full listing; hidden folders are never drops
    started, cursor = landing.tick(instance, cursor)
    assert started == ["2026-11-03-c", "2026-11-04-d"]
    assert (_cursor(cursor)["after"], _cursor(cursor)["since_full"]) == ("2026-11-04-d", 0)
    # tick 3: nothing new, and the unchanged incomplete drop is not examined again
    mark = len(log.lines) if log else 0
    started, cursor = landing.tick(instance, cursor)
    assert started == []
    if log:  # one request: the root listing resumes after d (the '0' skips every key in d's folder)
        tick_log = RequestLog()
        tick_log.lines = log.lines[mark:]
        listings = tick_log.folder_listings(landing.s3.bucket, "landing/")
        assert len(listings) == 1 and "start-after=landing/2026-11-04-d0" in listings[0]
        assert not [line for line in tick_log.lines if "2026-11-02-b/_MANIFEST.json" in line]
    # the manifest arrives: b starts on the next tick
    landing.add_manifest("2026-11-02-b")
    started, cursor = landing.tick(instance, cursor)
    assert started == ["2026-11-02-b"] and list(_cursor(cursor)["pending"]) == ["2026-11-00 bad name"]
    # a new drop that sorts last is picked up at once; one that sorts early waits for the full listing
    landing.land("2026-11-05-e")
    landing.land("2026-10-31-z")
    started, cursor = landing.tick(instance, cursor)
    assert started == ["2026-11-05-e"] and _cursor(cursor)["since_full"] == 3
    started, cursor = landing.tick(instance, cursor)
    assert started == ["2026-10-31-z"] and _cursor(cursor)["since_full"] == 0
    started, cursor = landing.tick(instance, cursor)
    assert started == []
    assert sorted(instance.get_dynamic_partitions("drops")) == [
        "2026-10-31-z",
        "2026-11-01-a",
        "2026-11-02-b",
        "2026-11-03-c",
        "2026-11-04-d",
        "2026-11-05-e",
    ]
    assert not instance.has_dynamic_partition("drops", "2026-11-00 bad name")
    if log:  # the full listings were paginated at the configured page size
        pages = log.folder_listings(landing.s3.bucket, "landing/")
        assert all("max-keys=2" in p for p in pages) and any("continuation-token=" in p for p in pages)


def test_version_1_cursor_is_migrated(settings: Settings, instance: dg.DagsterInstance) -> None:
    landing = Landing(settings, Path(settings.landing), None)
    for name in ("drop-001", "drop-002"):
        landing.land(name)
    v1 = json.dumps({"drop-001": "0123456789abcdef"})  # what the first sensor stored: drop -> manifest digest
    started, cursor = landing.tick(instance, v1)
    assert started == ["drop-002"]  # drop-001 was started under the old cursor
    assert _cursor(cursor) == {"v": 2, "after": "drop-002", "pending": {}, "since_full": 0}


@pytest.mark.parametrize(
    ("raw", "check"),
    [
        (None, lambda c: c == DropCursor()),
        (
            '{"v": 2, "after": "x", "pending": {"y": "f"}, "since_full": 4}',
            lambda c: (c.after, c.since_full) == ("x", 4),
        ),
        ('{"a": "digest"}', lambda c: c.legacy_seen == frozenset({"a"}) and c.since_full is None),
    ],
)
def test_cursor_versions_load(raw: str | None, check: Callable[[DropCursor], bool]) -> None:
    assert check(DropCursor.load(raw))


def test_garbled_cursor_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="source_drops cursor is not valid"):
        DropCursor.load('["not", "a", "cursor"]')
