"""mixture, eval_results, release and leaderboard materialized on a test instance over real WARC-backed drops."""

import hashlib
from pathlib import Path

import dagster as dg
import pytest

from mmrecipe.mixture.release import MARKER, latest_release, read_release
from mmrecipe.recipe import STAGES
from mmrecipe.settings import Settings
from mmrecipe.storage import Storage
from resources.settings import environment_settings
from tests.conftest import metadata_of, run_checks
from tests.unit.test_mixture_helpers import build_drop, eval_text, recipe_text, save_tiny_tokenizer, topic_texts

pytestmark = pytest.mark.slow  # whole recipe graph: mixture, proxy-model training, release

TINY_EVAL = {"seeds": [0, 1], "train_tokens": 512, "batch_size": 4, "context": 32, "d_model": 32, "n_layer": 1}
SHORT_EVAL = 6000  # characters of the held-out set: scoring it stays well under a second per seed
# The recipes tokenize with a 512-token BPE written beside them (`save_tiny_tokenizer`): these tests are about the
# stages' wiring, and GPT-2's 50k-wide output layer was most of their training time. The sample demo keeps `gpt2`.
TOKENIZER = "tokenizer.json"
RECIPES = {
    "default": recipe_text(total=12000, tokenizer=TOKENIZER),
    "english_hq": recipe_text(total=12000, w_web=0.9, w_cap=0.05, w_speech=0.05, tokenizer=TOKENIZER),
}


REAL_CHECKS = ("extracted_text", ["conservation", "no_pii_left"])  # they run on build_drop's tables as they are


def text_checks(settings: Settings, instance: dg.DagsterInstance, drop: str) -> tuple[dict[str, bool], str]:
    """extracted_text's blocking checks, run for real on the drop's current tables: passed by name, and the run."""
    result = run_checks(settings, instance, drop, *REAL_CHECKS)
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}, result.run_id


def record_drop_stages(settings: Settings, instance: dg.DagsterInstance, drop: str) -> None:
    """Give a drop built by `build_drop` (tables written straight to the lake) its Dagster evidence.

    Every gated drop stage gets a materialization reported for `drop`; extracted_text's blocking checks
    then run for real, and the other stages' blocking checks (which need a real pipeline's tables:
    phash index, WARC manifest, ASR) get a passing evaluation reported after their materialization.
    """
    from data_assets.quarantine import definitions, drop_gate
    from partitions import drops_partitions

    if not instance.has_dynamic_partition("drops", drop):
        instance.add_dynamic_partitions("drops", [drop])
    for stage, checks in drop_gate(definitions(), drops_partitions, STAGES).items():
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=stage, partition=drop))
        for check in checks if stage != REAL_CHECKS[0] else ():
            instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(asset_key=dg.AssetKey(stage), check_name=check, passed=True, partition=drop)
            )
    assert text_checks(settings, instance, drop)[0] == {"conservation": True, "no_pii_left": True}


@pytest.fixture
def recipe_env(
    settings: Settings, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Two drops in the lake and on the instance, the test's recipes (named like the shipped ones), an eval set."""
    recipes, evalsets = tmp_path / "recipes", tmp_path / "evalsets"
    recipes.mkdir()
    evalsets.mkdir()
    save_tiny_tokenizer(recipes / TOKENIZER)
    for name, text in RECIPES.items():
        (recipes / f"{name}.yaml").write_text(text)
    (evalsets / "held_out.txt").write_text(eval_text(SHORT_EVAL))
    monkeypatch.setenv("MMRECIPE_RECIPES", str(recipes))
    monkeypatch.setenv("MMRECIPE_EVALSETS", str(evalsets))
    monkeypatch.setenv("MMRECIPE_EXECUTOR", "in_process")  # one process: no per-step interpreter start-up
    lake, landing = Storage(settings.lake), Storage(settings.landing)
    for k, drop in enumerate(("d1", "d2")):
        build_drop(lake, landing, drop, topic_texts(k * 12, 12))
        record_drop_stages(settings, instance, drop)
    return environment_settings()


def run_recipe(
    settings: Settings,
    instance: dg.DagsterInstance,
    recipe: str,
    assets: tuple[str, ...],
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    from data_assets.definitions import build_defs

    for drop in ("d1", "d2"):
        if not instance.has_dynamic_partition("drops", drop):
            instance.add_dynamic_partitions("drops", [drop])
    job = build_defs(settings).resolve_job_def("recipe_stages_job")
    return job.execute_in_process(
        instance=instance,
        partition_key=recipe,
        asset_selection=[dg.AssetKey(a) for a in assets],
        run_config=run_config or {},
        raise_on_error=False,
    )


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_build_evaluate_release_and_leaderboard(recipe_env: Settings, instance: dg.DagsterInstance) -> None:
    from data_assets.definitions import build_defs

    run_config = {"ops": {"eval_results": {"config": TINY_EVAL}}}
    for recipe in RECIPES:
        result = run_recipe(recipe_env, instance, recipe, ("mixture", "eval_results", "release"), run_config)
        assert result.success
        assert checks_of(result) == {
            "token_shares_within_tolerance": True,
            "decontaminated": True,
            "manifest_resolves_to_raw_crawl": True,
            "complete_and_current": True,
        }
        mix = metadata_of(result, "mixture")
        assert mix["dagster/row_count"] > 0 and mix["too_small_sources"] == "none"
        assert "## PII and opt-out" in mix["data_card"] and "d2" in mix["drops"]
        ev = metadata_of(result, "eval_results")
        assert ev["dagster/row_count"] == 4  # 2 seeds x 2 learning rates (the full grid) x 1 eval set
        assert ev["tokens_seen_per_seed"] == 512 and "data:image/png;base64," in ev["loss_curve"]
        rel = metadata_of(result, "release")
        lake = Storage(recipe_env.lake)
        assert latest_release(lake, recipe) == rel["version"]
        marker = read_release(lake, recipe, rel["version"])
        mixture_checks = {f"mixture:{name}" for name in checks_of(result)} - {"mixture:complete_and_current"}
        assert marker is not None and mixture_checks < set(marker["checks_passed"])
        assert {"extracted_text:no_pii_left", "raw_crawl:conservation"} < set(marker["checks_passed"])
        for name, sha in marker["files"].items():  # the release is a verified copy of the mixture
            data = Path(recipe_env.lake, "releases", recipe, rel["version"], name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == sha

    board = (
        build_defs(recipe_env)
        .get_implicit_global_asset_job_def()
        .execute_in_process(instance=instance, asset_selection=[dg.AssetKey("leaderboard")])
    )
    meta = metadata_of(board, "leaderboard")
    assert meta["recipes"] == "default, english_hq"
    assert "±" in meta["leaderboard"] and "| held_out | " in meta["leaderboard"]
    assert meta["pairs"] == 1 and ("stable: " in meta["leaderboard"]) is (meta["stable_pairs"] == 1)
    assert "smallest detectable Δ" in meta["leaderboard"] and "tokens per seed" in meta["leaderboard"]
    assert Path(recipe_env.lake, "leaderboard", "leaderboard.png").stat().st_size > 1000


def test_release_blocked_by_failing_check_then_released_after_fix(
    recipe_env: Settings, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    from data_assets.definitions import build_defs

    # plant an overlap: the eval set now contains a paragraph of a page that is in the mixture
    planted = topic_texts(0, 12)[5][1]
    evalsets = tmp_path / "evalsets"
    (evalsets / "held_out.txt").write_text(eval_text(SHORT_EVAL) + "\n\n" + planted)
    blocked = run_recipe(recipe_env, instance, "default", ("mixture", "release"))
    assert checks_of(blocked)["decontaminated"] is False
    assert blocked.asset_materializations_for_node("release") == []  # stopped in-run by the blocking check
    assert not Path(recipe_env.lake, "releases").exists()

    defs = build_defs(recipe_env)
    tick = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=dg.AssetSelection.assets("release")
    )
    assert tick.get_requested_partitions(dg.AssetKey("release")) == set()  # and across runs by the condition

    direct = run_recipe(recipe_env, instance, "default", ("release",))  # forced by hand: the body refuses
    assert not direct.success and not Path(recipe_env.lake, "releases").exists()
    failure = next(e for e in direct.all_events if e.is_step_failure).step_failure_data
    assert "is not releasable: default: mixture:decontaminated failed in run" in failure.user_failure_data.description
    assert not [e for e in direct.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]  # no pointless retries

    (evalsets / "held_out.txt").write_text(eval_text(SHORT_EVAL))  # the fix: a clean eval set
    fixed = run_recipe(recipe_env, instance, "default", ("mixture",))
    assert checks_of(fixed)["decontaminated"] is True
    tick = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=dg.AssetSelection.assets("release"), cursor=tick.cursor
    )
    assert tick.get_requested_partitions(dg.AssetKey("release")) == {"default"}
    released = run_recipe(recipe_env, instance, "default", ("release",))
    assert released.success
    version = metadata_of(released, "release")["version"]
    assert Path(recipe_env.lake, "releases", "default", version, MARKER).exists()


def test_invalid_recipe_fails_the_mixture_naming_file_and_field(
    recipe_env: Settings, instance: dg.DagsterInstance
) -> None:
    path = Path(recipe_env.recipes_dir, "default.yaml")
    path.write_text(path.read_text().replace("weight: 0.8", "weight: -1"))
    result = run_recipe(recipe_env, instance, "default", ("mixture",))
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.user_failure_data
    assert failure.description == (f"{path}: field 'sources[0].weight': must be a positive number, got -1")
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert not Path(recipe_env.lake, "mixture", "default").exists()


DEVICE_CASES = [  # deployment environment, eval_results' `device` config, the device training must ask for
    ({}, "", "cpu"),  # embedded default
    ({"MMRECIPE_EXECUTOR": "k8s"}, "", "cuda"),  # production: eval_results' pod has a GPU
    ({"MMRECIPE_EXECUTOR": "k8s", "MMRECIPE_GPU": "off"}, "", "cpu"),
    ({"MMRECIPE_EXECUTOR": "k8s"}, "cpu", "cpu"),  # the run config wins
]


def test_proxy_training_runs_on_the_device_the_deployment_gives_eval_results(
    recipe_env: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each deployment's eval_results over one mixture (built by the first case's run, reused by the others)."""
    import torch

    from mmrecipe.proxy_eval import training

    asked: list[str] = []

    def resolve_device(name: str) -> torch.device:  # the boundary where training builds its torch device
        asked.append(name)
        return torch.device("cpu")  # no GPU here: train on the CPU, record what was asked for

    monkeypatch.setattr(training, "resolve_device", resolve_device)
    for i, (env, config_device, device) in enumerate(DEVICE_CASES):
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            deployment = environment_settings()
            config = {**TINY_EVAL, "seeds": [0], "lrs": [1e-2], "device": config_device}
            assets = ("mixture", "eval_results") if i == 0 else ("eval_results",)
            result = run_recipe(deployment, instance, "default", assets, {"ops": {"eval_results": {"config": config}}})
        assert result.success, env
        assert asked == [device], (env, config_device)
        asked.clear()


def test_ablations_run_only_for_a_recipe_that_opts_in(recipe_env: Settings, instance: dg.DagsterInstance) -> None:
    from data_assets.definitions import build_defs

    job = build_defs(recipe_env).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance, partition_key="default", asset_selection=[dg.AssetKey("ablations")], raise_on_error=False
    )
    assert not result.success
    [failure] = [e.step_failure_data.user_failure_data for e in result.all_events if e.is_step_failure]
    assert "recipe 'default' does not opt in to ablations" in failure.description
    assert f"add `ablations: true` to {recipe_env.recipes_dir}/default.yaml" in failure.description
