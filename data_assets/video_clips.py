"""video_clips: the drop's videos cut at shot boundaries into clips, with keyframes, motion, NSFW, speech and captions.

Cross-drop ownership is the image stage's (`mmrecipe.video.clip_index`): a drop is deduplicated only against
drops whose key sorts before it; a later-key drop materialized first becomes stale and the
`stale_video_drops` sensor re-materializes it.
"""

import dagster as dg

from data_assets.jobs import STEP_RETRY_POLICY
from data_assets.stage_metadata import column_schema, histogram_md, stage_metadata
from mmrecipe.images.image_filters import NsfwScorer
from mmrecipe.settings import Settings
from mmrecipe.stage_output import read_stage_table
from mmrecipe.video import clip_index
from mmrecipe.video.clip_analysis import ClipSettings
from mmrecipe.video.clip_encoding import ClipEncoding
from mmrecipe.video.decoding import DEFAULT_CODECS, VideoLimits
from mmrecipe.video.shots import DETECTOR, ShotSettings
from mmrecipe.video.stage import (
    ASSET,
    CLIP_SCHEMA,
    NSFW_THRESHOLD_KEY,
    VideoStageConfig,
    run_video_stage,
    video_conservation,
)
from partitions import drop_key, drops_partitions
from resources import LakeResource
from resources.engine import EngineResource
from resources.pod_resources import pod_resources, ray_task_resources
from resources.transcriber import TranscriberResource

MIN_CAPTION_COVERAGE = 0.5


class VideoClipsConfig(dg.Config):
    """Decode limits, shot and clip bounds, filters, dedup threshold and clip encoding of the video stage."""

    max_bytes: int = 256 << 20
    max_duration_s: float = 600.0
    max_pixels: int = 1920 * 1088
    max_frames: int = 36_000
    max_streams: int = 8
    allowed_codecs: str = DEFAULT_CODECS  # comma-separated FFmpeg decoder names
    shot_threshold: float = 27.0  # PySceneDetect content detector
    min_clip_s: float = 1.0
    max_clip_s: float = 30.0
    min_motion: float = 0.0005  # static-clip filter (mean grey change per frame, 0-1)
    nsfw_threshold: float = 0.5
    hamming_k: int = 10
    clip_codec: str = "libx264"
    clip_max_side: int = 320
    shard_samples: int = 200

    def stage_config(self) -> VideoStageConfig:
        limits = VideoLimits(
            self.max_bytes, self.max_duration_s, self.max_pixels, self.max_frames, self.max_streams,
            tuple(self.allowed_codecs.split(",")),
        )  # fmt: skip
        shots = ShotSettings(self.shot_threshold, min_clip_s=self.min_clip_s, max_clip_s=self.max_clip_s)
        return VideoStageConfig(
            ClipSettings(limits, shots), ClipEncoding(self.clip_codec, self.clip_max_side), self.min_motion,
            self.nsfw_threshold, self.hamming_k, shard_samples=self.shard_samples,
        )  # fmt: skip


@dg.asset(
    retry_policy=STEP_RETRY_POLICY,
    partitions_def=drops_partitions,
    deps=["raw_crawl"],
    group_name="drop_stages",
    kinds={"video", "parquet"},
    owners=["team:data-platform"],
    op_tags=pod_resources(ASSET),
    code_version="1",
    metadata={"dagster/column_schema": column_schema(CLIP_SCHEMA), "detector": DETECTOR},
)
def video_clips(
    context: dg.AssetExecutionContext,
    config: VideoClipsConfig,
    lake: LakeResource,
    transcriber: TranscriberResource,
    engine: EngineResource,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """Video clips of a drop: one row per kept shot, with keyframes, pHash, motion, NSFW, transcript and caption."""
    drop, storage = drop_key(context), lake.storage()
    analyse_engine = engine.engine(**ray_task_resources(ASSET, settings))  # the GPU pass: NSFW and ASR
    asr = transcriber.settings_for(ASSET, settings)  # on the device this step's tasks get, not transcribed_audio's
    result = run_video_stage(storage, drop, config.stage_config(), NsfwScorer, asr,
                             engine.engine(), engine.shard_bytes, analyse_engine)  # fmt: skip
    report = result.report
    if report.stale_drops:
        context.log.warning(f"video dedup of drops {report.stale_drops} is stale: stale_video_drops re-runs them")
    compute_s = sum(report.seconds.values())
    extra = {
        "records": report.records,
        "records_with_clips": report.records_with_clips,
        "video_seconds": round(report.video_seconds, 2),
        "clips_per_s": round(report.clips / compute_s, 3) if compute_s else 0.0,
        "rtf": round(compute_s / report.video_seconds, 4) if report.video_seconds else 0.0,
        "seconds": dg.MetadataValue.json({k: round(v, 2) for k, v in report.seconds.items()}),
        "detector": DETECTOR,
        "containers": histogram_md(report.containers, "container"),
        "caption_sources": histogram_md(report.caption_sources, "caption_source"),
        "caption_coverage": float(report.caption_coverage),
        "transcripts": histogram_md(report.transcripts, "transcript_status"),
        "html_pages": report.pages,
        "opted_out_pages": report.opted_out_pages,
        "shards": dg.MetadataValue.json(report.shards),
        "shard_samples": report.shard_samples,
        "index_path": dg.MetadataValue.path(clip_index.index_uri(storage, drop)),
        "index_digest": report.digest,
        "stale_drops": dg.MetadataValue.json(report.stale_drops),
        **result.run.metadata(),
    }
    preview = ["url", "clip_index", "start_s", "end_s", "motion", "caption_source", "caption", "transcript"]
    return dg.MaterializeResult(metadata=stage_metadata(result.output, preview, extra))


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(
    retry_policy=STEP_RETRY_POLICY,
    asset=video_clips,
    name="conservation",
    blocking=True,
    partitions_def=drops_partitions,
    description="Every video record of raw_crawl is in video_clips' kept clips or its rejects; none twice.",
)
def video_clips_conservation(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    verdict = video_conservation(lake.storage(), context.partition_key)
    return dg.AssetCheckResult(passed=verdict.passed, description=verdict.description, metadata=verdict.metadata())


def _kept(lake: LakeResource, drop: str, columns: list[str]) -> dict[str, list]:
    storage = lake.storage()
    return read_stage_table(storage, ASSET, drop, columns=columns).to_pydict()


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(
    retry_policy=STEP_RETRY_POLICY,
    asset=video_clips,
    name="no_near_duplicate_clips",
    blocking=True,
    partitions_def=drops_partitions,
    description="No two kept clips within Hamming distance k, in this drop or against earlier drops' kept clips.",
)
def no_near_duplicate_clips(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    import numpy as np

    kept = _kept(lake, context.partition_key, ["clip_id", "phash"])
    problems = clip_index.kept_conflicts(
        lake.storage(), context.partition_key, kept["clip_id"], np.asarray(kept["phash"], np.int64)
    )
    return dg.AssetCheckResult(
        passed=not problems,
        description=f"{len(problems)} problems" if problems else None,
        metadata={
            "kept": len(kept["clip_id"]),
            "problems": len(problems),
            "sample": "\n".join(problems[:10]) or "none",
        },
    )


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(
    retry_policy=STEP_RETRY_POLICY,
    asset=video_clips,
    name="no_nsfw_clips_kept",
    blocking=True,
    partitions_def=drops_partitions,
    description="Every kept clip was NSFW-scored and its keyframe score is below the threshold.",
)
def no_nsfw_clips_kept(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    storage = lake.storage()
    table = read_stage_table(storage, ASSET, context.partition_key, columns=["clip_id", "nsfw_score"])
    threshold = float((table.schema.metadata or {}).get(NSFW_THRESHOLD_KEY, b"0"))  # missing: nothing passes
    kept = table.to_pydict()
    bad = [c for c, s in zip(kept["clip_id"], kept["nsfw_score"], strict=True) if s is None or s >= threshold]
    return dg.AssetCheckResult(
        passed=not bad,
        description=f"{len(bad)} kept clips unscored or scored at/above {threshold}" if bad else None,
        metadata={
            "kept": len(kept["clip_id"]),
            "threshold": threshold,
            "flagged": len(bad),
            "sample": ", ".join(bad[:10]) or "none",
        },
    )


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(
    retry_policy=STEP_RETRY_POLICY,
    asset=video_clips,
    name="clip_caption_coverage",
    blocking=False,
    partitions_def=drops_partitions,
    description=f"Kept clips with a caption (track, title, aria-label or text); warns under {MIN_CAPTION_COVERAGE}",
)
def clip_caption_coverage(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    sources = _kept(lake, context.partition_key, ["caption_source"])["caption_source"]
    coverage = 1 - sources.count("none") / len(sources) if sources else 1.0
    return dg.AssetCheckResult(
        passed=coverage >= MIN_CAPTION_COVERAGE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"coverage": float(round(coverage, 4)), "kept": len(sources), "uncaptioned": sources.count("none")},
    )
