"""The deployment's settings, read from the environment once per process when the code location loads."""

from functools import cache

from mmrecipe.settings import Settings


@cache
def deployment_settings() -> Settings:
    """`Settings.from_env()`, read once: what definitions, jobs and pod tags are built from."""
    return Settings.from_env()
