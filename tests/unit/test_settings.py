"""The settings: every variable parsed from its declaration, bad values named with what is allowed, the README's
configuration table equal to the declarations, and no environment read anywhere else."""

import ast
import re
from pathlib import Path

import pytest

from mmrecipe.settings import VARIABLES, Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("mmrecipe", "data_assets", "resources", "sensors", "partitions")
HOME = {"MMRECIPE_HOME": "/srv/mmrecipe"}


def test_defaults_are_the_embedded_deployment() -> None:
    s = Settings.from_env(HOME)
    assert (s.home, s.lake, s.landing, s.dagster_home) == (
        "/srv/mmrecipe",
        "/srv/mmrecipe/lake",
        "/srv/mmrecipe/landing",
        "/srv/mmrecipe/dagster",
    )
    assert (s.executor, s.gpu.mode, dict(s.gpu.node_selector)) == (
        "multiprocess",
        "auto",
        {"mmrecipe.io/node-pool": "gpu"},
    )
    assert (s.retries.retries, s.retries.delay_s, s.dedup_buckets) == (3, 2.0, 256)
    assert (s.asr.device, s.asr.compute_type, s.asr.batch_size, s.asr.short_windows) == (None, None, 8, True)
    assert (s.automation.warn_fraction, s.automation.drop_lag_hours, s.automation.asset_hours) == (0.5, 6.0, {})
    assert (s.sensor.page_size, s.sensor.max_drops_per_tick, s.sensor.full_rescan_ticks) == (1000, 20, 20)
    assert (s.engine.name, s.engine.ray_address, s.engine.shard_bytes, s.engine.workers) == ("local", "", 64 << 20, 0)
    assert s.s3_endpoint_url is s.s3_region is s.tmp_dir is s.eval_sets_dir is s.lid_model is None


@pytest.mark.parametrize(
    ("env", "attribute", "expected"),
    [
        ({"MMRECIPE_STEP_RETRIES": "0"}, "retries.retries", 0),
        ({"MMRECIPE_STEP_RETRY_DELAY_S": "0.5"}, "retries.delay_s", 0.5),
        ({"MMRECIPE_EXECUTOR": "K8S"}, "executor", "k8s"),
        ({"MMRECIPE_GPU": "on"}, "gpu.mode", "on"),
        (
            {"MMRECIPE_GPU_NODE_SELECTOR": "pool=gpu, zone=us-east-1a"},
            "gpu.node_selector",
            {"pool": "gpu", "zone": "us-east-1a"},
        ),
        (
            {"MMRECIPE_GPU_NODE_SELECTOR": "nvidia.com/gpu.present=true"},
            "gpu.node_selector",
            {"nvidia.com/gpu.present": "true"},
        ),
        ({"MMRECIPE_DEDUP_BUCKETS": "64"}, "dedup_buckets", 64),
        ({"MMRECIPE_ASR_SHORT_WINDOWS": "off"}, "asr.short_windows", False),
        ({"MMRECIPE_ASR_SHORT_WINDOWS": "Yes"}, "asr.short_windows", True),
        ({"MMRECIPE_ASR_COMPUTE_TYPE": "int8_float16"}, "asr.compute_type", "int8_float16"),
        ({"MMRECIPE_ASR_BATCH_SIZE": " 32 "}, "asr.batch_size", 32),
        ({"MMRECIPE_ASR_LANGUAGE": "de"}, "asr.language", "de"),
        ({"MMRECIPE_FRESHNESS_EXTRACTED_TEXT_HOURS": "24"}, "automation.asset_hours", {"extracted_text": 24.0}),
        ({"MMRECIPE_FRESHNESS_WARN_FRACTION": "0"}, "automation.warn_fraction", 0.0),
        ({"MMRECIPE_SENSOR_PAGE_SIZE": "50"}, "sensor.page_size", 50),
        ({"MMRECIPE_S3_ENDPOINT_URL": "http://127.0.0.1:9000"}, "s3_endpoint_url", "http://127.0.0.1:9000"),
        ({"AWS_ENDPOINT_URL": "http://minio:9000"}, "s3_endpoint_url", "http://minio:9000"),
        ({"AWS_ENDPOINT_URL_S3": "https://s3.x", "AWS_ENDPOINT_URL": "http://y"}, "s3_endpoint_url", "https://s3.x"),
        ({"AWS_DEFAULT_REGION": "eu-west-1"}, "s3_region", "eu-west-1"),
        ({"AWS_REGION": "us-east-2", "AWS_DEFAULT_REGION": "eu-west-1"}, "s3_region", "us-east-2"),
        ({"MMRECIPE_TMP": "/scratch"}, "tmp_dir", "/scratch"),
        ({"MMRECIPE_EVALSETS": "/data/evalsets"}, "eval_sets_dir", "/data/evalsets"),
        ({"MMRECIPE_EXECUTOR": ""}, "executor", "multiprocess"),  # empty is unset
        ({"MMRECIPE_ENGINE": "Ray"}, "engine.name", "ray"),
        ({"RAY_ADDRESS": "ray://head:10001"}, "engine.ray_address", "ray://head:10001"),
        ({"MMRECIPE_SHARD_BYTES": "1048576"}, "engine.shard_bytes", 1 << 20),
        ({"MMRECIPE_WORKERS": "2"}, "engine.workers", 2),
    ],
)
def test_values_are_parsed_as_declared(env: dict[str, str], attribute: str, expected: object) -> None:
    value: object = Settings.from_env(HOME | env)
    for part in attribute.split("."):
        value = getattr(value, part)
    assert value == expected


@pytest.mark.parametrize(
    ("name", "raw", "allowed"),
    [
        ("MMRECIPE_STEP_RETRIES", "three", "an integer ≥ 0"),
        ("MMRECIPE_STEP_RETRIES", "-1", "an integer ≥ 0"),
        ("MMRECIPE_ASR_BATCH_SIZE", "0", "an integer ≥ 1"),
        ("MMRECIPE_DEDUP_BUCKETS", "0", "an integer ≥ 1"),
        ("MMRECIPE_AUTOMATION_INTERVAL_SECONDS", "1", "an integer ≥ 5"),
        ("MMRECIPE_STEP_RETRY_DELAY_S", "-2", "a number ≥ 0"),
        ("MMRECIPE_FRESHNESS_HOURS", "nan", "a number ≥ 1/60"),
        ("MMRECIPE_FRESHNESS_RAW_CRAWL_HOURS", "soon", "a number ≥ 1/60"),
        ("MMRECIPE_FRESHNESS_WARN_FRACTION", "1", "a number in [0, 1)"),
        ("MMRECIPE_EXECUTOR", "kubernetes", "`multiprocess`, `in_process` or `k8s`"),
        ("MMRECIPE_ENGINE", "spark", "`local` or `ray`"),
        ("MMRECIPE_WORKERS", "0", "an integer ≥ 1"),
        ("MMRECIPE_SHARD_BYTES", "64MiB", "an integer ≥ 1"),
        ("MMRECIPE_GPU", "yes", "`auto`, `on` or `off`"),
        ("MMRECIPE_ASR_DEVICE", "gpu", "`cpu`, `cuda` or `auto`"),
        ("MMRECIPE_ASR_COMPUTE_TYPE", "fp16", "a CTranslate2 compute type"),
        ("MMRECIPE_ASR_SHORT_WINDOWS", "maybe", "`1`/`0`"),
        ("MMRECIPE_GPU_NODE_SELECTOR", "just-a-label", "`label=value[,label=value]`"),
        ("MMRECIPE_GPU_NODE_SELECTOR", "=gpu", "`label=value[,label=value]`"),
        ("MMRECIPE_S3_ENDPOINT_URL", "minio:9000", "an `http(s)://` URL"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(name: str, raw: str, allowed: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env(HOME | {name: raw})
    message = str(error.value)
    assert message.startswith(f"{name}={raw!r} is not allowed: expected {allowed}")
    assert f"unset {name} for the default" in message


def readme_table() -> dict[str, list[str]]:
    """Variable → its other cells, from the table under the README's "Configuration" heading."""
    section = (REPO / "README.md").read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    cells = [[c.strip() for c in row.strip("|").split(" | ")] for row in rows]
    return {c[0].strip("`"): c[1:] for c in cells}


def test_the_readme_configuration_table_is_the_declarations() -> None:
    documented = readme_table()
    declared = {v.name: [v.default, v.allowed, v.meaning] for v in VARIABLES}
    assert sorted(set(declared) - set(documented)) == [], "declared but not in the README's Configuration table"
    assert sorted(set(documented) - set(declared)) == [], "in the README's Configuration table but not declared"
    assert documented == declared
    assert len(declared) == len(VARIABLES)  # each variable declared once


def environment_reads(path: Path) -> list[str]:
    """`line: code` of every read of the process environment in a module (`os.environ[...] = ...` is a write)."""
    tree = ast.parse(path.read_text())
    writes = {
        id(target.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Subscript)
    }
    reads = []
    for node in ast.walk(tree):
        env = isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb")
        if (env and id(node) not in writes) or (isinstance(node, ast.Name) and node.id in ("environ", "getenv")):
            reads.append(f"{node.lineno}: {ast.unparse(node)}")
    return reads


def test_no_module_but_the_settings_reads_the_environment() -> None:
    modules = sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))
    assert len(modules) > 50
    readers = {str(p.relative_to(REPO)): r for p in modules if (r := environment_reads(p))}
    assert set(readers) == {"resources/settings.py"}, readers  # the edge; the library takes a mapping
    assert len(readers["resources/settings.py"]) == 1  # the one read, in environment_settings
    # every variable the code mentions is declared (prefixes such as `MMRECIPE_ASR_*` and per-asset names aside)
    mentioned = {m for p in modules for m in re.findall(r"MMRECIPE_[A-Z0-9_<>]+\*?", p.read_text())}
    declared = {v.name for v in VARIABLES}
    skip = ("_", "*")
    undeclared = [m for m in mentioned if m not in declared and not m.endswith(skip) and "_FRESHNESS_" not in m]
    assert sorted(undeclared) == []
