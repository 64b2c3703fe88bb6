"""The code uses public Dagster APIs only, and keeps the warnings of the preview features it relies on visible."""

import ast
import os
import subprocess
import sys
from pathlib import Path

from mmrecipe.settings import REPO_ROOT

CODE = ["data_assets", "resources", "sensors", "partitions", "mmrecipe"]
# Test files that still need a private name, each saying why at the import (owner in brackets):
PRIVATE_OK = {
    "tests/unit/test_freshness_policies.py",  # the freshness daemon under a frozen clock has no public API
}


def private_dagster_imports(path: Path) -> list[str]:
    """`module` of every `import dagster._…` / `from dagster._… import` in a Python file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        found += [n for n in names if n.startswith("dagster._") or n.startswith("dagster_shared")]
    return found


def test_no_private_dagster_imports() -> None:
    files = [p for d in [*CODE, "tests"] for p in (REPO_ROOT / d).rglob("*.py")]
    private = {
        str(p.relative_to(REPO_ROOT)): names
        for p in files
        if (names := private_dagster_imports(p)) and str(p.relative_to(REPO_ROOT)) not in PRIVATE_OK
    }
    assert len(files) > 50 and private == {}


def test_definitions_load_without_silencing_preview_or_deprecation_warnings(tmp_path: Path) -> None:
    env = os.environ | {"MMRECIPE_HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run(
        [sys.executable, "-W", "default::DeprecationWarning", "-c", "import data_assets.definitions"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # per-partition checks are still a preview feature: its warning reaches the user (see partitions/__init__.py)
    assert "PreviewWarning: Specifying a partitions_def on an AssetCheckSpec is currently in preview" in done.stderr
    assert "DeprecationWarning" not in done.stderr  # e.g. define_asset_job(partitions_def=...) is gone
