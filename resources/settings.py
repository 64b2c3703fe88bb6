"""The deployment's settings, read from the process environment: the one place that reads it."""

import os
from functools import cache

from mmrecipe.settings import Settings


def environment_settings() -> Settings:
    """`Settings` from this process's environment, read now (the CLI reads it once per command)."""
    return Settings.from_env(os.environ)


@cache
def deployment_settings() -> Settings:
    """`environment_settings()`, read once: what definitions, jobs and pod tags are built from."""
    return environment_settings()
