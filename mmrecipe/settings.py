"""Where mmrecipe keeps things: the home folder, the Dagster instance, the lake and the landing root.

Read from the environment: `MMRECIPE_HOME` (default `./.mmrecipe`) holds `dagster/`, `lake/` and
`landing/`; `MMRECIPE_LAKE` and `MMRECIPE_LANDING` override the last two with a local path or an
`s3://bucket/prefix` URI, and `MMRECIPE_S3_ENDPOINT_URL` points at an S3-compatible store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """The locations one mmrecipe deployment reads and writes."""

    home: str
    dagster_home: str
    lake: str
    landing: str
    recipes_dir: str
    s3_endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables, with the embedded defaults."""
        env = os.environ if env is None else env
        home = os.path.abspath(env.get("MMRECIPE_HOME") or ".mmrecipe")
        return cls(
            home=home,
            dagster_home=os.path.abspath(env.get("DAGSTER_HOME") or os.path.join(home, "dagster")),
            lake=env.get("MMRECIPE_LAKE") or os.path.join(home, "lake"),
            landing=env.get("MMRECIPE_LANDING") or os.path.join(home, "landing"),
            recipes_dir=env.get("MMRECIPE_RECIPES") or str(REPO_ROOT / "recipes"),
            s3_endpoint_url=env.get("MMRECIPE_S3_ENDPOINT_URL") or None,
        )


def recipe_keys(recipes_dir: str) -> list[str]:
    """The recipe names in a folder: one per `*.yaml` file."""
    folder = Path(recipes_dir)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
