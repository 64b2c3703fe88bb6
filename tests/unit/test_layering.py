"""The dependency rule: the pure library never imports dagster."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import mmrecipe

REPO = Path(__file__).resolve().parents[2]


def test_importing_every_mmrecipe_module_pulls_in_no_dagster() -> None:
    modules = sorted(m.name for m in pkgutil.walk_packages(mmrecipe.__path__, "mmrecipe."))
    assert "mmrecipe.warc_index" in modules and "mmrecipe.storage" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'dagster' or k.startswith(('dagster.', 'dagster_')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "", f"mmrecipe imports dagster modules: {out.stdout.strip()}"


def test_no_dagster_import_statements_in_mmrecipe_sources() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "mmrecipe").rglob("*.py")
        if any(line.strip().startswith(("import dagster", "from dagster")) for line in p.read_text().splitlines())
    ]
    assert offenders == []
