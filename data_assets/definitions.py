"""The Definitions of the mmrecipe code location: stage assets, checks, jobs, sensors, resources."""

import dagster as dg

from data_assets import (
    ablations,
    deduped_images,
    eval_results,
    extracted_text,
    leaderboard,
    mixture,
    quality_classifier,
    raw_crawl,
    recipe_diff,
    release,
    transcribed_audio,
    video_clips,
)
from data_assets.automation import automation_for
from data_assets.jobs import drop_stages_job, recipe_stages_job
from mmrecipe.settings import Settings
from resources import build_resources
from resources.settings import deployment_settings
from sensors import SENSORS

STAGE_MODULES = [
    raw_crawl,
    quality_classifier,
    extracted_text,
    transcribed_audio,
    deduped_images,
    video_clips,
    mixture,
    eval_results,
    leaderboard,
    release,
    ablations,
    recipe_diff,
]


def executor_of(settings: Settings) -> dg.ExecutorDefinition:
    """The executor MMRECIPE_EXECUTOR names: `multiprocess` (default), `in_process` or `k8s` (a pod per step)."""
    if settings.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor if settings.executor == "in_process" else dg.multiprocess_executor


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    """The code location's Definitions, configured from `settings` (default: the deployment's, read once)."""
    settings = settings or deployment_settings()
    automation = automation_for(dg.load_assets_from_modules(STAGE_MODULES), settings.automation)
    return dg.Definitions(
        assets=automation.assets,
        asset_checks=[*dg.load_asset_checks_from_modules(STAGE_MODULES), *automation.asset_checks],
        jobs=[drop_stages_job, recipe_stages_job],
        sensors=[*SENSORS, *automation.sensors],
        resources=build_resources(settings),
        executor=executor_of(settings),
    )


defs = build_defs()
