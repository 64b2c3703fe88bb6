"""Transient faults during real materializations: short ones are absorbed by the storage retries, longer
ones by the step RetryPolicy every asset and check carries, in every run however it starts (a named job, or the implicit
asset job that sensors and the UI launch); either way the outputs equal a clean run's, nothing duplicated.
A permanent failure (`dg.Failure(allow_retries=False)`) is not retried."""

from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
import pytest
import yaml

import mmrecipe.storage as storage_module
from data_assets.jobs import STEP_RETRY_POLICY, step_retry_policy
from mmrecipe.settings import Settings
from mmrecipe.stage_output import PROVENANCE_FIELDS, StageWriter
from mmrecipe.storage import Storage
from tests.conftest import land_drop
from tests.hostile.faults import FaultyHandler, faulty_fs
from tests.hostile.harness import CorpusDir, fresh_home, lake_files, materialize, temporary_files
from tests.hostile.make_hostile_corpus import DROP
from tests.production.prod_support import PROD_INSTANCE_YAML

pytestmark = pytest.mark.slow  # every drop stage on the hostile corpus, in child processes

FILES = ("00-controls.warc.gz", "06-images.warc.gz", "08-dup-a.warc.gz", "09-dup-b.warc.gz")
STAGES = ["raw_crawl", "deduped_images"]  # deduped_images also keeps a cross-drop pHash index in the lake


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep mmrecipe's retry loop and attempt count, without its sleeps."""
    attempts, _ = storage_module.retried.__defaults__
    monkeypatch.setattr(storage_module.retried, "__defaults__", (attempts, 0.0))


def _land(home: Path, corpus: CorpusDir) -> Settings:
    settings = fresh_home(home)
    land_drop(settings, "flaky", {n: (corpus.drop_dir(DROP) / n).read_bytes() for n in FILES})
    return settings


def _fail_lake_writes(monkeypatch: pytest.MonkeyPatch, lake: str, handler: FaultyHandler) -> None:
    """Every Storage on the lake root uses the faulty filesystem (the landing stays healthy)."""
    original = Storage.fs
    fs = pafs.PyFileSystem(handler)

    def patched(self: Storage) -> pafs.FileSystem:
        if self._fs is None and not self.is_s3 and self.root == lake:
            self._fs = fs
        return original.fget(self)

    monkeypatch.setattr(Storage, "fs", property(patched))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one MMRECIPE_HOME path of this module's runs, each on a fresh home there: outputs hold absolute paths,
    so a faulty run equals the clean run byte for byte only at the same path."""
    return tmp_path_factory.mktemp("flaky") / "home"


@pytest.fixture(scope="module")
def clean(home: Path, hostile_corpus: CorpusDir) -> dict[str, str]:
    """The lake of a clean, fault-free run of STAGES on the `flaky` drop at `home` (once per module)."""
    settings = _land(home, hostile_corpus)
    with dg.instance_for_test(temp_dir=settings.dagster_home) as instance:
        assert materialize(settings, instance, "flaky", STAGES).success
    return lake_files(settings.lake)


def test_step_retry_policy_defaults_and_settings() -> None:
    policy = step_retry_policy(Settings.from_env({}).retries)
    assert policy is not None and policy.max_retries == 3 and policy.delay == 2.0
    assert policy.backoff == dg.Backoff.EXPONENTIAL and policy.jitter == dg.Jitter.PLUS_MINUS
    tuned = step_retry_policy(
        Settings.from_env({"MMRECIPE_STEP_RETRIES": "5", "MMRECIPE_STEP_RETRY_DELAY_S": "30"}).retries
    )
    assert tuned is not None and (tuned.max_retries, tuned.delay) == (5, 30.0)
    assert step_retry_policy(Settings.from_env({"MMRECIPE_STEP_RETRIES": "0"}).retries) is None


def test_short_faults_are_absorbed_by_storage_retries_with_nothing_duplicated(
    home: Path, hostile_corpus: CorpusDir, clean: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _land(home, hostile_corpus)
    # at most 3 consecutive failures of any one call: within the 4 attempts of mmrecipe.storage.retried
    handler = FaultyHandler({"open_output": 2, "write": 3, "move": 2, "open_input": 2, "info": 1})
    _fail_lake_writes(monkeypatch, settings.lake, handler)
    with dg.instance_for_test(temp_dir=settings.dagster_home) as instance:
        result = materialize(settings, instance, "flaky", STAGES)
    assert result.success
    assert sum(handler.plan.values()) == 0 and sum(handler.failed.values()) == 10  # every fault fired
    assert lake_files(settings.lake) == clean  # byte-identical: no row lost or written twice
    assert temporary_files(settings.lake) == {}
    final = [path for path in handler.published if "/staging/" not in path]  # parts are staged, then moved in
    assert len(final) == len(set(final)) == len(clean)  # each file renamed into place once
    retried_steps = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried_steps == []  # absorbed below the step


def _writes_to_exhaust_one_publish(tmp_path: Path) -> int:
    """How many failing opens it takes for one StageWriter publish to give up (the storage retry budget)."""
    fs, handler = faulty_fs({"open_output": 10_000})
    schema = pa.schema(PROVENANCE_FIELDS)
    writer = StageWriter(Storage(str(tmp_path / "probe"), _fs=fs), "probe", "p", schema)
    with pytest.raises(ConnectionResetError):
        writer.close()
    writer.abort()
    return handler.calls["open_output"]


def test_an_outage_longer_than_storage_retries_is_retried_by_the_step_policy(
    tmp_path: Path, home: Path, hostile_corpus: CorpusDir, clean: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = _writes_to_exhaust_one_publish(tmp_path)
    assert budget >= 4  # storage retries absorb at least 3 consecutive failures
    settings = _land(home, hostile_corpus)
    handler = FaultyHandler({"open_output": budget})  # the whole first attempt of raw_crawl fails
    _fail_lake_writes(monkeypatch, settings.lake, handler)
    with dg.instance_for_test(temp_dir=settings.dagster_home) as instance:
        instance.add_dynamic_partitions("drops", ["flaky"])
        from data_assets.definitions import build_defs

        job = build_defs(settings).resolve_job_def("drop_stages_job")  # the production job and its RetryPolicy
        result = job.execute_in_process(
            instance=instance,
            partition_key="flaky",
            asset_selection=[dg.AssetKey(s) for s in STAGES],
            raise_on_error=False,
        )
    assert result.success
    retried_steps = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried_steps == ["raw_crawl"]
    assert len(result.asset_materializations_for_node("raw_crawl")) == 1
    assert handler.failed["open_output"] == budget
    assert lake_files(settings.lake) == clean
    assert temporary_files(settings.lake) == {}


def _implicit_asset_job(settings: Settings) -> dg.JobDefinition:
    """The job the automation sensor, the dedup-refresh sensors and the UI's "Materialize" launch runs of."""
    from data_assets.definitions import build_defs

    return build_defs(settings).resolve_implicit_global_asset_job_def()


def test_every_asset_and_check_carries_the_step_retry_policy_in_every_job() -> None:
    from data_assets.definitions import build_defs

    defs = build_defs(Settings.from_env({}))
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    assert len(assets) >= 10 and STEP_RETRY_POLICY is not None
    assert {a.key.to_user_string(): a.op.retry_policy for a in assets} == {
        a.key.to_user_string(): STEP_RETRY_POLICY for a in assets
    }
    checks = {str(key): c.node_def.retry_policy for c in defs.asset_checks or [] for key in c.check_keys}
    assert len(checks) >= 12 and checks == dict.fromkeys(checks, STEP_RETRY_POLICY)
    prod = yaml.safe_load(PROD_INSTANCE_YAML.read_text())["run_retries"]  # run retries: lost run workers only
    assert prod == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}


def test_a_run_of_the_implicit_asset_job_retries_a_transient_fault(
    tmp_path: Path, home: Path, hostile_corpus: CorpusDir, clean: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = _writes_to_exhaust_one_publish(tmp_path)
    settings = _land(home, hostile_corpus)
    handler = FaultyHandler({"open_output": budget})  # the whole first attempt of raw_crawl fails
    _fail_lake_writes(monkeypatch, settings.lake, handler)
    with dg.instance_for_test(temp_dir=settings.dagster_home) as instance:
        instance.add_dynamic_partitions("drops", ["flaky"])
        result = _implicit_asset_job(settings).execute_in_process(
            instance=instance, partition_key="flaky", asset_selection=[dg.AssetKey("raw_crawl")], raise_on_error=False
        )
    assert result.job_def.name == "__ASSET_JOB" and result.success
    retried_steps = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried_steps == ["raw_crawl"]
    assert len(result.asset_materializations_for_node("raw_crawl")) == 1
    assert handler.failed["open_output"] == budget
    assert {k: v for k, v in lake_files(settings.lake).items() if k.startswith("raw_crawl/")} == {
        k: v for k, v in clean.items() if k.startswith("raw_crawl/")
    }


def test_a_permanent_failure_in_the_implicit_asset_job_is_not_retried(
    tmp_path: Path, hostile_corpus: CorpusDir
) -> None:
    settings = _land(tmp_path / "home", hostile_corpus)
    warc = Path(settings.landing, "flaky", FILES[0])
    data = bytearray(warc.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other sha256: raw_crawl raises dg.Failure(allow_retries=False)
    warc.write_bytes(bytes(data))
    with dg.instance_for_test(temp_dir=settings.dagster_home) as instance:
        instance.add_dynamic_partitions("drops", ["flaky"])
        result = _implicit_asset_job(settings).execute_in_process(
            instance=instance, partition_key="flaky", asset_selection=[dg.AssetKey("raw_crawl")], raise_on_error=False
        )
    assert not result.success
    kinds = [e.event_type for e in result.all_events if e.step_key == "raw_crawl"]
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds and kinds.count(dg.DagsterEventType.STEP_FAILURE) == 1
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    assert "sha256" in failure.user_failure_data.description and FILES[0] in failure.user_failure_data.description
