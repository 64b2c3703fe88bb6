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


# Libraries a stage loads when it runs, not when the code location loads: every CLI command, code server, run
# worker and test child imports the Definitions, and these cost ~6 CPU-s together (torch alone ~3).
HEAVY_AT_RUN_TIME = (
    "torch",
    "matplotlib",
    "boto3",
    "dagster_aws",
    "scipy",
    "datasketch",
    "faster_whisper",
    "ctranslate2",
    "cv2",
    "scenedetect",
    "ray",  # only the ray engine (MMRECIPE_ENGINE=ray) imports it
)


def test_importing_the_definitions_loads_no_heavy_library() -> None:
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from data_assets.definitions import defs\n"
        "import mmrecipe.text.pipeline\n"  # what the local engine's workers import to run text shards
        "assert defs.resolve_asset_graph().get_all_asset_keys(), 'no assets'\n"
        f"print(','.join(m for m in {HEAVY_AT_RUN_TIME!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "", f"importing the Definitions loads {out.stdout.strip()}: import it where it is used"
