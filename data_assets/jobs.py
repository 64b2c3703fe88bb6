"""The jobs users launch: all drop stages for one drop, and all recipe stages for one recipe.

Both jobs retry a failed step with exponential backoff (`STEP_RETRY_POLICY`). Storage calls are
already retried inside mmrecipe (`mmrecipe.storage.retried`, ~1.4 s of backoff); the step retry
covers what outlasts that: an S3 brown-out, a throttled bucket, a pod evicted mid-step. Every stage
rewrites its whole partition atomically and deterministically, so a retried step cannot duplicate
rows. Tune with `MMRECIPE_STEP_RETRIES` (default 3; 0 disables) and `MMRECIPE_STEP_RETRY_DELAY_S`
(default 2 s, doubled per attempt, ±50% jitter). A stage that knows its error is permanent should
raise `dg.Failure(..., allow_retries=False)` so that it is not retried.
"""

import os
from collections.abc import Mapping

import dagster as dg

DROP_STAGES = "drop_stages"
RECIPE_STAGES = "recipe_stages"


def step_retry_policy(env: Mapping[str, str] | None = None) -> dg.RetryPolicy | None:
    """The retry policy of every step of the jobs below, from the environment (None: no retries)."""
    env = os.environ if env is None else env
    try:
        retries = int(env.get("MMRECIPE_STEP_RETRIES", "3"))
        delay = float(env.get("MMRECIPE_STEP_RETRY_DELAY_S", "2"))
    except ValueError as e:
        raise ValueError(
            f"MMRECIPE_STEP_RETRIES must be an integer and MMRECIPE_STEP_RETRY_DELAY_S a number of seconds: {e}"
        ) from None
    if retries < 0 or delay < 0:
        raise ValueError(
            f"MMRECIPE_STEP_RETRIES={retries} and MMRECIPE_STEP_RETRY_DELAY_S={delay} must not be negative"
        )
    if retries == 0:
        return None
    return dg.RetryPolicy(max_retries=retries, delay=delay, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


STEP_RETRY_POLICY = step_retry_policy()

drop_stages_job = dg.define_asset_job(
    "drop_stages_job",
    selection=dg.AssetSelection.groups(DROP_STAGES),
    op_retry_policy=STEP_RETRY_POLICY,
    description="Every drop-partitioned stage for one source drop, with their checks.",
)
recipe_stages_job = dg.define_asset_job(
    "recipe_stages_job",
    selection=dg.AssetSelection.groups(RECIPE_STAGES),
    op_retry_policy=STEP_RETRY_POLICY,
    description="Mixture, evaluation and release for one recipe over all ingested drops.",
)
