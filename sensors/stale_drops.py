"""Stale-drop sensors: re-materialize a drop whose cross-drop dedup decisions went stale.

A drop is deduplicated only against drops whose key sorts before it, and its output records the state
of those earlier drops it was decided against (their index versions or kept digests). When an
earlier-key drop is materialized after a later one, or its entries change, the later drop's recorded
basis no longer matches: it is stale. One factory builds every stage's sensor, with one policy:

- each tick requests the earliest registered stale drop only, so a later drop is re-decided after
  the drops before it have settled (a refresh can change what the drops after it see);
- the run key is the drop plus a sha256 of the basis the refresh will be decided against, so each
  state is refreshed once, and the refreshed output equals what in-order materialization gives.

Stages: extracted_text (over filtered_text's band index), deduped_images (over its pHash index),
transcribed_audio (over its own band index; ASR outcomes are reused from the transcript cache) and
video_clips (over its clip index).
"""

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import dagster as dg

from data_assets.deduped_images import deduped_images
from data_assets.extracted_text import extracted_text
from data_assets.transcribed_audio import transcribed_audio
from data_assets.video_clips import video_clips
from mmrecipe.dedup import BandIndex
from mmrecipe.images import phash_index
from mmrecipe.storage import Storage
from mmrecipe.text.dedup_stage import FILTERED
from mmrecipe.video import clip_index
from partitions import drops_partitions
from resources import LakeResource


@dataclass(frozen=True)
class Staleness:
    """Why a drop's dedup is stale, and the earlier drops' state a refresh would be decided against."""

    why: str
    basis: Mapping[str, str]


StaleFinder = Callable[[Storage], Mapping[str, Staleness]]


def stale_drop_sensor(name: str, target: dg.AssetsDefinition, find_stale: StaleFinder) -> dg.SensorDefinition:
    """The sensor that re-materializes `target` for the earliest registered drop `find_stale` reports."""
    consumer = target.key.to_user_string()

    @dg.sensor(
        name=name,
        target=[target],
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Re-materializes the earliest drop whose {consumer} dedup predates a change to an earlier drop.",
    )
    def refresh(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
        stale = find_stale(lake.storage())
        registered = set(context.instance.get_dynamic_partitions(drops_partitions.name))
        for drop in sorted(set(stale) - registered):
            context.log.warning(f"{consumer}[{drop}] is stale but {drop} is not a registered drop")
        waiting = sorted(d for d in stale if d in registered)
        if not waiting:
            return dg.SensorResult(skip_reason=f"no stale {consumer} drops")
        drop, state = waiting[0], stale[waiting[0]]
        basis = hashlib.sha256(json.dumps(dict(state.basis), sort_keys=True).encode()).hexdigest()[:16]
        context.log.info(f"{consumer}[{drop}] is stale: {state.why}")
        request = dg.RunRequest(partition_key=drop, run_key=f"{drop}:{basis}", tags={"mmrecipe/why": state.why[:200]})
        return dg.SensorResult(run_requests=[request])

    return refresh


def band_index_staleness(index_asset: str, consumer: str) -> StaleFinder:
    """Drops of `consumer` decided against band-index versions of earlier drops that changed since."""

    def find(storage: Storage) -> dict[str, Staleness]:
        index = BandIndex(storage, index_asset)
        versions = index.versions()
        return {
            drop: Staleness(why, {d: v for d, v in versions.items() if d < drop})
            for drop, why in index.stale_outputs(consumer).items()
        }

    return find


def image_staleness(storage: Storage) -> dict[str, Staleness]:
    """Drops whose image dedup basis no longer matches the kept digests of the drops before them."""
    return {
        drop: Staleness("deduplicated against an outdated basis", phash_index.current_basis(storage, drop))
        for drop in phash_index.stale_drops(storage)
    }


def video_staleness(storage: Storage) -> dict[str, Staleness]:
    """Drops whose clip dedup basis no longer matches the kept digests of the drops before them."""
    return {
        drop: Staleness("deduplicated against an outdated basis", clip_index.current_basis(storage, drop))
        for drop in clip_index.stale_drops(storage)
    }


text_dedup_refresh = stale_drop_sensor(
    "text_dedup_refresh", extracted_text, band_index_staleness(FILTERED, "extracted_text")
)
stale_image_drops = stale_drop_sensor("stale_image_drops", deduped_images, image_staleness)
audio_dedup_refresh = stale_drop_sensor(
    "audio_dedup_refresh", transcribed_audio, band_index_staleness("transcribed_audio", "transcribed_audio")
)
stale_video_drops = stale_drop_sensor("stale_video_drops", video_clips, video_staleness)
