"""The jobs users launch (all drop stages for one drop, all recipe stages for one recipe) and the step
retry policy that every asset and asset check carries.

`STEP_RETRY_POLICY` is set on each `@dg.asset` and `@dg.asset_check` itself, not on these jobs, so
every run retries a failed step the same way however it starts: these jobs, the automation and
dedup-refresh sensors and the UI (which launch the implicit asset job). Storage calls are already retried inside
mmrecipe (`mmrecipe.storage.retried`, ~1.4 s of backoff); the step retry covers what outlasts
that: an S3 brown-out, a throttled bucket, a pod evicted mid-step. Every stage rewrites its whole
partition atomically and deterministically, so a retried step cannot duplicate rows. Tune with
`MMRECIPE_STEP_RETRIES` (default 3; 0 disables) and `MMRECIPE_STEP_RETRY_DELAY_S` (default 2 s,
doubled per attempt, ±50% jitter), read when the code location loads. A stage that knows its
error is permanent raises `dg.Failure(..., allow_retries=False)` so that it is not retried.
Run retries (helm/dagster.prod.yaml) only cover what a step cannot: a lost run worker.
"""

import dagster as dg

from mmrecipe.settings import RetrySettings
from resources.settings import deployment_settings

DROP_STAGES = "drop_stages"
RECIPE_STAGES = "recipe_stages"


def step_retry_policy(retries: RetrySettings) -> dg.RetryPolicy | None:
    """The retry policy of every asset's step (None: no retries)."""
    if retries.retries == 0:
        return None
    return dg.RetryPolicy(
        max_retries=retries.retries, delay=retries.delay_s, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    )


STEP_RETRY_POLICY = step_retry_policy(deployment_settings().retries)

drop_stages_job = dg.define_asset_job(
    "drop_stages_job",
    selection=dg.AssetSelection.groups(DROP_STAGES),
    description="Every drop-partitioned stage for one source drop, with their checks.",
)
recipe_stages_job = dg.define_asset_job(
    "recipe_stages_job",
    selection=dg.AssetSelection.groups(RECIPE_STAGES),
    description="Mixture, evaluation and release for one recipe over all ingested drops.",
)
