"""Dedup refresh sensors: re-materialize a drop whose cross-drop dedup decisions went stale.

A stage that deduplicates against a persistent band index (`mmrecipe.dedup.BandIndex`) records,
in its output's Parquet metadata, the index versions of the earlier drops it was decided against.
When an earlier-key drop is materialized after a later one (or its entries change), the later
drop's recorded versions no longer match the index; its sensor requests one run per stale drop.
The run key names the earlier drops' index state, so each state is refreshed once, and the
refreshed output equals what in-order materialization gives.

- `text_dedup_refresh`: extracted_text, over filtered_text's index (only the dedup step re-runs);
- `audio_dedup_refresh`: transcribed_audio, over its own index (ASR outcomes are reused from the
  drop's transcript cache when the inputs and settings are unchanged).
"""

import hashlib

import dagster as dg

from data_assets.extracted_text import extracted_text
from data_assets.transcribed_audio import transcribed_audio
from mmrecipe.dedup import BandIndex
from mmrecipe.text.dedup_stage import FILTERED
from resources import LakeResource


def dedup_refresh_sensor(name: str, target: dg.AssetsDefinition, index_asset: str) -> dg.SensorDefinition:
    """The sensor that re-runs `target` for every drop whose decisions over `index_asset`'s index are stale."""
    consumer = target.key.to_user_string()

    @dg.sensor(
        name=name,
        target=[target],
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Re-materializes {consumer} of drops whose earlier drops' dedup index changed.",
    )
    def refresh(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
        index = BandIndex(lake.storage(), index_asset)
        state = index.versions()
        registered = set(context.instance.get_dynamic_partitions("drops"))
        requests = []
        for drop, why in sorted(index.stale_outputs(consumer).items()):
            if drop not in registered:
                context.log.warning(f"{consumer}[{drop}] is stale but {drop} is not a registered drop")
                continue
            earlier = ",".join(f"{d}={v}" for d, v in sorted(state.items()) if d < drop)
            run_key = f"{drop}:{hashlib.sha1(earlier.encode()).hexdigest()[:16]}"
            requests.append(dg.RunRequest(partition_key=drop, run_key=run_key, tags={"mmrecipe/why": why[:200]}))
            context.log.info(f"{consumer}[{drop}] is stale: {why}")
        return dg.SensorResult(run_requests=requests)

    return refresh


text_dedup_refresh = dedup_refresh_sensor("text_dedup_refresh", extracted_text, FILTERED)
audio_dedup_refresh = dedup_refresh_sensor("audio_dedup_refresh", transcribed_audio, "transcribed_audio")
