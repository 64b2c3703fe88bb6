"""The source-drop sensor: registers each complete new drop and requests its drop-stage run.

A drop is complete when its `_MANIFEST.json` exists and every file it lists is there with the
listed size (`mmrecipe.drops.verify_drop(check_hashes=False)`); local and S3 landing roots follow
that one rule. A tick reads no file contents, so it stays fast on multi-GB drops: the sha256s are
verified by raw_crawl, whose run fails (without retries) and names the file if one does not match.

Listing is incremental. The cursor (JSON, version 2) holds:
- `after`: the last drop folder a tick resolved; the next tick lists only folders after it
  (S3 `StartAfter`, one level deep, paginated), so a tick does not re-list a huge prefix;
- `pending`: drops seen incomplete or invalid, with a fingerprint of their files; each tick
  re-checks them only if something in the folder changed;
- `since_full`: ticks since the last full listing. Every `MMRECIPE_SENSOR_FULL_RESCAN_TICKS`
  ticks the whole root is listed once more, to catch drops whose names sort before `after`.
Drop names that grow over time (e.g. `2026-11-22-crawl`) are picked up on the next tick;
others within one full-rescan period. Version-1 cursors (`{drop: manifest digest}`) are migrated.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from data_assets.jobs import drop_stages_job
from mmrecipe.drops import DropError, Manifest, verify_drop
from mmrecipe.settings import ScanLimits, Settings
from mmrecipe.storage import Storage
from partitions import drops_partitions
from resources import LandingResource
from resources.s3 import folder_key, iter_drop_folders

CURSOR_VERSION = 2


@dataclass
class DropCursor:
    """The sensor's memory between ticks (see the module docstring)."""

    after: str = ""
    pending: dict[str, str] = field(default_factory=dict)
    since_full: int | None = None  # None: never listed in full, so the next tick does
    legacy_seen: frozenset[str] = frozenset()  # drops a version-1 cursor had started (not persisted)

    @classmethod
    def load(cls, raw: str | None) -> "DropCursor":
        if not raw:
            return cls()
        body = json.loads(raw)
        if isinstance(body, dict) and body.get("v") == CURSOR_VERSION:
            since = body.get("since_full")
            return cls(str(body.get("after", "")), dict(body.get("pending", {})), None if since is None else int(since))
        if isinstance(body, dict) and all(isinstance(v, str) for v in body.values()):
            return cls(legacy_seen=frozenset(body))  # version 1: {drop: manifest digest}
        raise ValueError(f"source_drops cursor is not valid JSON of version 1 or {CURSOR_VERSION}: {raw[:200]!r}")

    def dump(self) -> str:
        body = {"v": CURSOR_VERSION, "after": self.after, "pending": self.pending, "since_full": self.since_full}
        return json.dumps(body, sort_keys=True)

    def advance(self, name: str) -> None:
        if folder_key(name) > folder_key(self.after):
            self.after = name


def drop_fingerprint(storage: Storage, drop: str) -> str | None:
    """A digest of a drop folder's file names, sizes and mtimes; None if the folder is empty or gone."""
    stats = storage.stat_files(storage.uri(drop))
    if not stats:
        return None
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def scan_drops(
    storage: Storage,
    cursor: DropCursor,
    registered: set[str],
    limits: ScanLimits,
    log: Callable[[str], None],
) -> list[tuple[str, Manifest]]:
    """The drops that became complete since `cursor`, updating `cursor` in place."""
    started: list[tuple[str, Manifest]] = []
    budget = limits.max_drops_per_tick

    def check(name: str) -> None:
        try:
            manifest = verify_drop(storage, name, check_hashes=False)
        except DropError as e:
            cursor.pending[name] = drop_fingerprint(storage, name) or ""
            log(f"drop {name!r} not started yet: {e}")
            return
        cursor.pending.pop(name, None)
        started.append((name, manifest))

    for name in sorted(cursor.pending, key=folder_key):
        fingerprint = drop_fingerprint(storage, name)
        if name in registered or fingerprint is None:
            cursor.pending.pop(name)  # started by someone else, or its folder was removed
        elif fingerprint != cursor.pending[name] and budget > 0:
            budget -= 1
            check(name)

    full = cursor.since_full is None or cursor.since_full >= limits.full_rescan_ticks
    completed = True
    known = registered | set(cursor.pending) | cursor.legacy_seen | {n for n, _ in started}
    for name in iter_drop_folders(storage, "" if full else cursor.after, limits.page_size):
        if name.startswith((".", "_")):
            continue  # staging/hidden folders are never drops, and must not move `after` past real ones
        if name in known:
            cursor.advance(name)
            continue
        if budget == 0:
            completed = False
            break
        budget -= 1
        check(name)
        cursor.advance(name)
    if full and completed:
        cursor.since_full = 0
    elif not full:
        cursor.since_full = (cursor.since_full or 0) + 1
    return started


@dg.sensor(
    name="source_drops",
    job=drop_stages_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts the drop stages for every complete drop (valid _MANIFEST.json) in the landing location.",
)
def source_drops(
    context: dg.SensorEvaluationContext, landing: LandingResource, settings: dg.ResourceParam[Settings]
) -> dg.SensorResult:
    """Run requests for drops that landed complete since the last tick; the cursor says where listing resumes."""
    cursor = DropCursor.load(context.cursor)
    registered = set(context.instance.get_dynamic_partitions(drops_partitions.name))
    started = scan_drops(landing.storage(), cursor, registered, settings.sensor, context.log.warning)
    # Cold start: with no quality classifier yet, the text stages cannot score. Index the drop only; the
    # automation sensor trains the classifier ("train when missing") and then runs the stages eagerly.
    cold = context.instance.get_latest_materialization_event(dg.AssetKey("quality_classifier")) is None
    selection = [dg.AssetKey("raw_crawl")] if cold else None
    requests = [
        dg.RunRequest(partition_key=name, run_key=f"{name}:{m.digest}", asset_selection=selection)
        for name, m in started
    ]
    for name, manifest in started:
        scope = "raw_crawl only (no quality classifier yet)" if cold else "every drop stage"
        context.log.info(f"drop {name!r} complete ({len(manifest.files)} files): run requested for {scope}")
    new_drops = [name for name, _ in started]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[drops_partitions.build_add_request(new_drops)] if new_drops else [],
        cursor=cursor.dump(),
    )
