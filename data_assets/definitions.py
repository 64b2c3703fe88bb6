"""The Definitions of the mmrecipe code location: stage assets, checks, jobs, sensors, resources."""

import os

import dagster as dg

from data_assets import (
    deduped_images,
    eval_results,
    extracted_text,
    leaderboard,
    mixture,
    quality_classifier,
    raw_crawl,
    release,
    transcribed_audio,
)
from data_assets.automation import automation_for
from data_assets.jobs import drop_stages_job, recipe_stages_job
from mmrecipe.settings import Settings
from resources import build_resources
from sensors import SENSORS

STAGE_MODULES = [
    raw_crawl,
    quality_classifier,
    extracted_text,
    transcribed_audio,
    deduped_images,
    mixture,
    eval_results,
    leaderboard,
    release,
]


def executor_from_env() -> dg.ExecutorDefinition:
    """The executor named by MMRECIPE_EXECUTOR: `multiprocess` (default) or `k8s` (a pod per step)."""
    name = os.environ.get("MMRECIPE_EXECUTOR", "multiprocess")
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if name == "in_process":
        return dg.in_process_executor
    if name != "multiprocess":
        raise ValueError(f"MMRECIPE_EXECUTOR={name!r}: use multiprocess, in_process or k8s")
    return dg.multiprocess_executor


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    """The code location's Definitions, with resources configured from `settings` (default: the environment)."""
    automation = automation_for(dg.load_assets_from_modules(STAGE_MODULES))
    return dg.Definitions(
        assets=automation.assets,
        asset_checks=[*dg.load_asset_checks_from_modules(STAGE_MODULES), *automation.asset_checks],
        jobs=[drop_stages_job, recipe_stages_job],
        sensors=[*SENSORS, *automation.sensors],
        resources=build_resources(settings),
        executor=executor_from_env(),
    )


defs = build_defs()
