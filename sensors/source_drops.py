"""The source-drop sensor: registers each complete new drop and requests its drop-stage run."""

import json

import dagster as dg

from data_assets.jobs import drop_stages_job
from mmrecipe.drops import DropError, verify_drop
from partitions import drops_partitions
from resources import LandingResource


def _load_cursor(raw: str | None) -> dict[str, str]:
    return json.loads(raw) if raw else {}


@dg.sensor(
    name="source_drops",
    job=drop_stages_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts the drop stages for every complete drop (valid _MANIFEST.json) in the landing location.",
)
def source_drops(context: dg.SensorEvaluationContext, landing: LandingResource) -> dg.SensorResult:
    """Run requests for drops that landed complete since the last tick; the cursor maps drop → manifest digest."""
    seen = _load_cursor(context.cursor)
    storage = landing.storage()
    new_drops: list[str] = []
    requests: list[dg.RunRequest] = []
    for name in storage.list_dirs(storage.root):
        if name in seen or name.startswith((".", "_")):
            continue
        try:
            manifest = verify_drop(storage, name)
        except DropError as e:
            context.log.warning(f"drop {name!r} not started: {e}")
            continue
        seen[name] = manifest.digest
        if not context.instance.has_dynamic_partition(drops_partitions.name, name):
            new_drops.append(name)
        requests.append(dg.RunRequest(partition_key=name, run_key=f"{name}:{manifest.digest}"))
        context.log.info(f"drop {name!r} complete ({len(manifest.files)} files): run requested")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[drops_partitions.build_add_request(new_drops)] if new_drops else [],
        cursor=json.dumps(seen, sort_keys=True),
    )
