"""transcribed_audio: what is said in each speech clip of a drop, with its conservation, PII and WER checks.

The drop's clip outcomes (decode, speech detection, ASR, transcript filters) are stored beside
its tables (`mmrecipe.audio.clip_outcomes`) before PII redaction and cross-drop dedup. When an
earlier-key drop arrives later, the `audio_dedup_refresh` sensor (`sensors.stale_drops`)
re-materializes the stale drop, which reuses those outcomes and only redoes the dedup.
"""

import time

import dagster as dg
from pydantic import Field

from data_assets.jobs import STEP_RETRY_POLICY
from data_assets.stage_checks import conservation_check
from data_assets.stage_metadata import column_schema, stage_metadata
from mmrecipe.audio.audio_shards import run_audio_stage
from mmrecipe.audio.calibration import load_calibration_set, transcribe_calibration_set
from mmrecipe.audio.decoding import DecodeLimits
from mmrecipe.audio.speech_detection import VadSettings
from mmrecipe.audio.transcribed_audio import SCHEMA, AudioStageSettings
from mmrecipe.audio.transcript_filters import TranscriptFilterSettings
from mmrecipe.audio.transcript_postprocessing import pii_left
from mmrecipe.dedup import BandIndex
from mmrecipe.settings import Settings
from mmrecipe.stage_output import markdown_table, read_stage_table
from partitions import drop_key, drops_partitions
from resources import LakeResource
from resources.engine import EngineResource
from resources.pod_resources import pod_resources, ray_task_resources
from resources.transcriber import TranscriberResource

ASSET = "transcribed_audio"


class TranscribedAudioConfig(dg.Config):
    """Limits and thresholds of the ASR stage (decode, speech detection, transcript filters)."""

    min_duration_s: float = 0.5
    max_duration_s: float = 3600.0
    vad_threshold: float = 0.5
    min_speech_s: float = 0.5
    min_speech_ratio: float = 0.1
    min_avg_logprob: float = -1.0
    max_no_speech_prob: float = 0.6
    max_repeated_ngram_fraction: float = 0.3
    max_stock_phrase_fraction: float = 0.5
    languages: list[str] = Field(default_factory=lambda: ["en"])
    min_language_probability: float = 0.5

    def stage_settings(self) -> AudioStageSettings:
        return AudioStageSettings(
            limits=DecodeLimits(min_duration_s=self.min_duration_s, max_duration_s=self.max_duration_s),
            vad=VadSettings(threshold=self.vad_threshold),
            filters=TranscriptFilterSettings(
                min_avg_logprob=self.min_avg_logprob,
                max_no_speech_prob=self.max_no_speech_prob,
                max_repeated_ngram_fraction=self.max_repeated_ngram_fraction,
                max_stock_phrase_fraction=self.max_stock_phrase_fraction,
                languages=tuple(self.languages),
                min_language_probability=self.min_language_probability,
            ),
            min_speech_s=self.min_speech_s,
            min_speech_ratio=self.min_speech_ratio,
        )


@dg.asset(
    retry_policy=STEP_RETRY_POLICY,
    partitions_def=drops_partitions,
    group_name="drop_stages",
    kinds={"whisper", "parquet"},
    owners=["team:data-platform"],
    op_tags=pod_resources(ASSET),
    code_version="1",
    deps=["raw_crawl"],
    metadata={"dagster/column_schema": column_schema(SCHEMA)},
)
def transcribed_audio(
    context: dg.AssetExecutionContext,
    config: TranscribedAudioConfig,
    lake: LakeResource,
    transcriber: TranscriberResource,
    engine: EngineResource,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """Transcripts of a drop's speech clips: PII-redacted text, timed segments, language, audio facts; deduplicated."""
    drop, storage, asr = drop_key(context), lake.storage(), transcriber.settings()
    started = time.perf_counter()
    asr_engine = engine.engine(**ray_task_resources(ASSET, settings))  # the GPU pass
    run = run_audio_stage(engine.engine(), storage, drop, config.stage_settings(), asr, engine.shard_bytes, asr_engine,
                          settings.dedup_buckets)  # fmt: skip
    if run.reused:  # same records, settings and model: a dedup refresh or a retry
        context.log.info(f"reused the stored clip outcomes of {run.run.output.counts.total} audio records: no ASR")
    wall_s, stats = time.perf_counter() - started, run.stats
    stale_later = sorted(
        d for d in BandIndex(storage, ASSET, buckets=settings.dedup_buckets).stale_outputs(ASSET) if d > drop
    )
    if stale_later:
        context.log.info(f"earlier drop {drop} changed the dedup of {stale_later}: audio_dedup_refresh re-runs them")
    extra = {
        "hours_in": round(stats.in_seconds / 3600, 4),
        "hours_kept": round(run.kept_seconds / 3600, 4),
        "rtf": round(stats.rtf, 4),
        "rtf_wall": round(wall_s / stats.in_seconds, 4) if stats.in_seconds else 0.0,
        "asr_seconds": round(stats.asr_s, 2),
        "model_load_seconds": round(run.load_s, 2),
        "asr_reused": run.reused,
        "duration_histogram": dg.MetadataValue.md(markdown_table(stats.histogram_rows(), ["duration", "clips"])),
        "pii_redacted": int(sum(run.pii.values())),
        "index_bytes_read": int(run.index_bytes_read),
        "stale_later_drops": ", ".join(stale_later) or "none",
        "model": asr.name,
        "device": f"{asr.device}/{asr.compute_type}",
        **run.run.metadata(),
    }
    preview = ["url", "duration_s", "language", "speech_ratio", "transcript"]
    return dg.MaterializeResult(metadata=stage_metadata(run.run.output, preview, extra))


transcribed_audio_conservation = conservation_check(ASSET, "audio")


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(
    retry_policy=STEP_RETRY_POLICY,
    asset=transcribed_audio,
    name="no_pii_left",
    blocking=True,
    partitions_def=drops_partitions,
    description="An independent PII scanner finds nothing in any kept transcript or segment text.",
)
def transcribed_audio_no_pii_left(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    storage = lake.storage()
    rows = read_stage_table(storage, ASSET, context.partition_key, columns=["record_id", "transcript", "segments"])
    rows = rows.to_pylist()
    found = pii_left(rows)
    return dg.AssetCheckResult(
        passed=not found,
        description=None if not found else f"{len(found)} PII values left in {len({f[0] for f in found})} rows",
        metadata={
            "rows_scanned": len(rows),
            "pii_found": len(found),
            "kinds": ", ".join(sorted({kind for _, kind, _ in found})) or "none",
            "records": ", ".join(sorted({rid for rid, _, _ in found})[:10]) or "none",
        },
    )


class CalibrationWerConfig(dg.Config):
    """The WER bound the configured transcriber must meet on the speech calibration set."""

    max_wer: float = 0.15


# partitions_def on a check: Dagster preview, warning kept visible (why: partitions/__init__.py)
@dg.asset_check(
    retry_policy=STEP_RETRY_POLICY,
    asset=transcribed_audio,
    name="calibration_wer",
    blocking=True,
    partitions_def=drops_partitions,
    description="The configured transcriber's WER on the bundled real-speech calibration set is within the bound.",
)
def transcribed_audio_calibration_wer(
    config: CalibrationWerConfig, transcriber: TranscriberResource
) -> dg.AssetCheckResult:
    clips = load_calibration_set(transcriber.calibration_folder())
    report = transcribe_calibration_set(transcriber.transcriber(), clips)
    worst = sorted(report.wer.per_item, key=lambda item: -item[1] / max(item[2], 1))[:3]
    return dg.AssetCheckResult(
        passed=report.wer.wer <= config.max_wer,
        description=f"WER {report.wer.wer:.3f} on {len(clips)} clips (bound {config.max_wer})",
        metadata={
            "wer": round(report.wer.wer, 4),
            "max_wer": config.max_wer,
            "clips": len(clips),
            "reference_words": report.wer.reference_words,
            "word_errors": report.wer.errors,
            "rtf": round(report.rtf, 4),
            "model": transcriber.settings().name,
            "worst": ", ".join(f"{name} ({errors}/{words})" for name, errors, words in worst),
            "skipped": ", ".join(f"{k}: {v}" for k, v in report.skipped.items()) or "none",
        },
    )
