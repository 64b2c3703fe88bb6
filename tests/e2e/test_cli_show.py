"""`mmrecipe show` on every asset of the Definitions, in-process with click's CliRunner, over real materializations.

One home is built per module: two drops whose recipe stages (mixture, eval_results, release, leaderboard) are
materialized, then drop d1 landed with a manifest and run through every drop stage for real; d3 is registered only.
"""

from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics

import dagster as dg
import pytest
from click.testing import CliRunner

from data_assets.cli import _instance, main
from mmrecipe.drops import MANIFEST, manifest_for_folder
from mmrecipe.settings import Settings
from mmrecipe.storage import Storage
from resources.settings import environment_settings
from tests.assets.test_recipe_stages import RECIPES, SHORT_EVAL, TINY_EVAL, TOKENIZER, record_drop_stages
from tests.unit.test_mixture_helpers import build_drop, eval_text, save_tiny_tokenizer, topic_texts

DROP_STAGES = ("raw_crawl", "filtered_text", "extracted_text", "deduped_images", "transcribed_audio", "video_clips")


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, partition: str | None, assets: list[str],
         run_config: dict | None = None) -> None:  # fmt: skip
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=partition, asset_selection=[dg.AssetKey(a) for a in assets],
        run_config=run_config or {}, raise_on_error=False,
    )  # fmt: skip
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """An MMRECIPE_HOME whose instance holds a materialization of every asset."""
    from data_assets.definitions import build_defs

    root = tmp_path_factory.mktemp("show")
    recipes, evalsets = root / "recipes", root / "evalsets"
    for folder in (recipes, evalsets):
        folder.mkdir()
    save_tiny_tokenizer(recipes / TOKENIZER)  # RECIPES tokenize with it
    for name, text in RECIPES.items():
        (recipes / f"{name}.yaml").write_text(text + ("ablations: true\n" if name == "default" else ""))
    (evalsets / "held_out.txt").write_text(eval_text(SHORT_EVAL))
    reference = root / "reference.txt"
    reference.write_text("\n\n\n".join(" ".join(topics[n].split()) for n in ("calls", "function", "class", "lambda")))
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MMRECIPE_LAKE", "MMRECIPE_LANDING", "MMRECIPE_S3_ENDPOINT_URL", "DAGSTER_HOME"):
            mp.delenv(var, raising=False)
        mp.setenv("MMRECIPE_HOME", str(root / "home"))
        mp.setenv("MMRECIPE_TMP", str(root / "tmp"))
        mp.setenv("MMRECIPE_RECIPES", str(recipes))
        mp.setenv("MMRECIPE_EVALSETS", str(evalsets))
        mp.setenv("MMRECIPE_EXECUTOR", "in_process")
        settings = environment_settings()
        lake, landing = Storage(settings.lake), Storage(settings.landing)
        for k, drop in enumerate(("d1", "d2")):
            build_drop(lake, landing, drop, topic_texts(k * 12, 12))
        instance, defs = _instance(settings), build_defs(settings)
        for drop in ("d1", "d2"):
            record_drop_stages(settings, instance, drop)  # the gate's evidence for build_drop's tables
        for recipe in RECIPES:  # one torch thread: tiny models, and the fast lane's other worker has the other core
            config = {"ops": {"eval_results": {"config": {**TINY_EVAL, "threads": 1}}}}
            _run(defs, instance, "recipe_stages_job", recipe, ["mixture", "eval_results", "release"], config)
        _run(defs, instance, "__ASSET_JOB", None, ["leaderboard"])
        ablate = {"ops": {"ablations": {"config": {**TINY_EVAL, "lrs": [1e-2], "threads": 1}}}}
        _run(defs, instance, "__ASSET_JOB", "default", ["ablations"], ablate)
        _run(defs, instance, "__ASSET_JOB", "english_hq", ["recipe_diff"])
        d1 = Path(settings.landing) / "d1"
        (d1 / MANIFEST).write_text(manifest_for_folder(str(d1), "d1").to_json())
        _run(defs, instance, "drop_stages_job", "d1", ["raw_crawl"])
        classifier = {"positive_texts_file": str(reference), "positive_urls_file": "", "dim": 16, "bucket": 20000}
        _run(defs, instance, "__ASSET_JOB", None, ["quality_classifier"],
             {"ops": {"quality_classifier": {"config": classifier}}})  # fmt: skip
        _run(defs, instance, "drop_stages_job", "d1", list(DROP_STAGES[1:]))
        instance.add_dynamic_partitions("drops", ["d3"])  # registered, never materialized
        yield settings


def _show(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["show", *args])
    return result.exit_code, result.output.splitlines()


@pytest.mark.parametrize(
    ("asset", "partition", "first_line", "expect"),
    [
        ("raw_crawl", "d1", "raw_crawl[d1]  {lake}/raw_crawl/", "sample rows (5 of {lake}/raw_crawl/data/d1/"),
        ("filtered_text", "d1", "filtered_text[d1]  {lake}/filtered_text/", "drop/reject reasons:"),
        ("extracted_text", "d1", "extracted_text[d1]  {lake}/extracted_text/", "sample rows ("),
        ("deduped_images", "d1", "deduped_images[d1]  {lake}/deduped_images/", "sample rows ("),
        ("transcribed_audio", "d1", "transcribed_audio[d1]  {lake}/transcribed_audio/", "drop/reject reasons:"),
        (
            "video_clips",
            "d1",
            "video_clips[d1]  {lake}/video_clips/",
            "sample rows (0 of {lake}/video_clips/data/d1/",
        ),  # d1 holds no video
        ("quality_classifier", None, "quality_classifier[]  {lake}/quality_classifier/", "binary file of "),
        ("mixture", "default", "mixture[default]  {lake}/mixture/default/", "sample rows (5):"),
        ("eval_results", "default", "eval_results[default]  {lake}/eval_results/default/", "sample rows ("),
        ("release", "english_hq", "release[english_hq]  {lake}/releases/english_hq/v-", "sample rows (5 of "),
        ("leaderboard", None, "leaderboard[]  {lake}/leaderboard/leaderboard.md", "{lake}/leaderboard/leaderboard.md"),
        ("ablations", "default", "ablations[default]  {lake}/ablations/default/effects.parquet", "sample rows ("),
        ("recipe_diff", "english_hq", "recipe_diff[english_hq]  {lake}/recipe_diff/english_hq/vs_default.md", "{lake}"),
    ],
)
def test_show_works_for_every_asset(home: Settings, asset: str, partition: str | None, first_line: str,
                                    expect: str) -> None:  # fmt: skip
    code, lines = _show(asset, *([partition] if partition else []), "--rows", "5")
    assert code == 0, lines
    assert lines[0].startswith(first_line.format(lake=home.lake)), lines[0]
    assert any(line.strip().startswith(expect.format(lake=home.lake)) for line in lines), lines
    assert not any("Traceback" in line or "ArrowInvalid" in line for line in lines)


def test_every_materializable_asset_is_covered(home: Settings) -> None:
    from data_assets.definitions import build_defs

    graph = build_defs(home).resolve_asset_graph()
    names = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    covered = {p[0] for p in test_show_works_for_every_asset.pytestmark[0].args[1]}
    assert names == covered


def test_show_cuts_long_values_with_an_ellipsis_and_keeps_rows_on_one_line(home: Settings) -> None:
    from mmrecipe.preview import one_line

    code, lines = _show("raw_crawl", "d1", "--rows", "3")
    rows = [line for line in lines if line.startswith("    - ")]
    assert code == 0 and len(rows) == 3
    assert all("warc_path=" in r and "…" in r for r in rows)  # absolute WARC paths are longer than a cell
    cells = [c.split("=", 1)[1] for r in rows for c in r[6:].split("; ") if "=" in c]
    assert max(len(c) for c in cells) <= 60
    assert one_line("first line\nsecond\tline  " + "x" * 80, 30) == "first line second line " + "x" * 6 + "…"


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (["nosuchasset", "x"], "Error: unknown asset 'nosuchasset': choose one of ablations, deduped_images, "),
        (["raw_crawl", "d9"], "Error: unknown partition 'd9' of raw_crawl: choose one of d1, d2, d3"),
        (["mixture", "nosuch"], "Error: unknown partition 'nosuch' of mixture: choose one of default, english_hq"),
        (["raw_crawl"], "Error: raw_crawl is partitioned: choose one of d1, d2, d3"),
        (["leaderboard", "default"], "Error: leaderboard is not partitioned: run `mmrecipe show leaderboard`"),
        (["raw_crawl", "d3"], "Error: raw_crawl[d3] has no materialization yet: run `mmrecipe ingest DIR` first"),
    ],
)
def test_show_names_what_is_wrong(home: Settings, args: list[str], first_line: str) -> None:
    code, lines = _show(*args)
    assert code == 1
    assert lines[0].startswith(first_line), lines[0]
    assert len(lines) == 1


def test_the_leaderboard_plot_is_embedded_in_the_ui_and_linked_in_the_lake_file(home: Settings) -> None:
    from data_assets.cli import _latest_metadata

    meta = _latest_metadata(_instance(home), "leaderboard", None)
    assert meta is not None
    assert meta["plot"].startswith("![bits per byte by recipe](data:image/png;base64,iVBORw0KGgo")
    assert "](leaderboard.png)" not in meta["leaderboard"] and "| english_hq " in meta["leaderboard"]
    text = Path(home.lake, "leaderboard", "leaderboard.md").read_text()
    assert "![bits per byte by recipe](leaderboard.png)" in text
    changed = "batch_size, context, d_model, n_layer, seeds, train_tokens"  # TINY_EVAL's overrides of `full`
    assert f"- eval config full (changed: {changed}) (default, english_hq): 2 seeds x 2 learning rates" in text


def test_ls_lists_drops_recipes_releases_and_stage_tables(home: Settings) -> None:
    from mmrecipe.mixture.release import latest_release

    result = CliRunner().invoke(main, ["ls"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    lake = Storage(home.lake)
    version = latest_release(lake, "default")
    assert version is not None and version.startswith("v-")
    assert lines[:2] == [f"drops (1) in {home.landing}", f"  {'d1':<28} {home.landing}/d1"]  # d2 has no manifest
    assert f"  {'default':<28} LATEST={version}  {home.lake}/releases/default/{version}" in lines
    assert f"  {'english_hq':<28} mixture {home.lake}/mixture/english_hq" in lines
    assert f"  {'extracted_text':<28} {home.lake}/extracted_text/data  (2 drops)" in lines
