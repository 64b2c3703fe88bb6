"""The code location validates with `dagster definitions validate` (its specs: tests/e2e/test_asset_specs.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # `dagster definitions validate` in a subprocess
def test_dagster_definitions_validate(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMRECIPE_", "DAGSTER_"))}
    env["MMRECIPE_HOME"] = str(tmp_path)
    dagster = str(Path(sys.executable).with_name("dagster"))
    out = subprocess.run(
        [dagster, "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All code locations passed validation" in out.stdout + out.stderr
