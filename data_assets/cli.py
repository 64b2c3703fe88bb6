"""The `mmrecipe` command line: ingest, build, demo, show, explain, diff and verify, through the same Definitions.

Every command runs on a real DagsterInstance at $DAGSTER_HOME (default `$MMRECIPE_HOME/dagster`,
SQLite) so runs, materializations and checks appear in the Dagster UI exactly as if launched there.
"""

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path

import click
import dagster as dg

from mmrecipe.drops import (
    MANIFEST,
    DropError,
    folder_files,
    manifest_for_folder,
    parse_manifest,
    validate_drop_name,
    verify_drop,
)
from mmrecipe.proxy_eval.presets import EVAL_PRESETS
from mmrecipe.settings import REPO_ROOT, Settings, recipe_keys
from resources.settings import environment_settings
from resources.storage import storage_resources

SAMPLE_DROPS = REPO_ROOT / "samples" / "drops"
QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance at DAGSTER_HOME, created with the embedded-default dagster.yaml of this package."""
    os.makedirs(settings.dagster_home, exist_ok=True)
    config = Path(settings.dagster_home) / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(str(files("data_assets") / "dagster.yaml"), config)
    os.environ["DAGSTER_HOME"] = settings.dagster_home
    return dg.DagsterInstance.get()


def _defs(settings: Settings) -> dg.Definitions:
    from data_assets.definitions import build_defs

    return build_defs(settings)


def _report(result: dg.ExecuteInProcessResult, what: str) -> bool:
    """Print failed steps and failed checks of a run; whether it fully succeeded."""
    failed_checks = [e for e in result.get_asset_check_evaluations() if not e.passed]
    for ev in failed_checks:
        sev = ev.severity.value if ev.severity else "ERROR"
        click.echo(f"  check FAILED [{sev}]: {ev.asset_key.to_user_string()}.{ev.check_name}", err=True)
    for event in result.all_events:
        if event.is_step_failure:
            err = event.step_failure_data.error
            msg = err.message.strip().splitlines()[-1] if err else "unknown error"
            click.echo(f"  step FAILED: {event.step_key}: {msg}", err=True)
    ok = result.success
    click.echo(f"{what}: {'ok' if ok else 'FAILED'} (run {result.run_id})")
    return ok


def land_folder(settings: Settings, folder: Path, drop: str) -> list[str]:
    """Copy a local drop's WARC files (or what its own manifest lists) into landing, manifest last; the files skipped.

    Nothing is copied when the folder holds no WARC file, and a landing that fails verification is removed.
    """
    validate_drop_name(drop)
    landing = storage_resources(settings)[1].storage()
    manifest_file = folder / MANIFEST
    warcs, others = folder_files(str(folder))
    if manifest_file.exists():
        where, manifest = str(manifest_file), parse_manifest(manifest_file.read_text(), str(manifest_file))
        missing = [e.path for e in manifest.files if not (folder / e.path).is_file()]
        if missing:
            raise DropError(f"{manifest_file}: lists {missing[0]}, which is not in {folder}")
    else:
        where, manifest = str(folder), manifest_for_folder(str(folder), drop, warcs)
    if not manifest.warc_files:
        found = f"{len(others)} other files, e.g. {', '.join(others[:3])}" if others else "it is empty"
        raise DropError(
            f"{where}: no *.warc or *.warc.gz file ({found}). Point `mmrecipe ingest` at a folder of WARC files."
        )
    landed = [landing.uri(drop, e.path) for e in manifest.files] + [landing.uri(drop, MANIFEST)]
    try:
        for entry, uri in zip(manifest.files, landed, strict=False):
            landing.copy_file_in(str(folder / entry.path), uri)
        landing.write_bytes(landed[-1], manifest.to_json().encode())
        verify_drop(landing, drop)
    except DropError:
        for uri in landed:
            landing.delete(uri)
        raise
    listed = {e.path for e in manifest.files}
    return [p for p in [*warcs, *others] if p not in listed]


def _execute(
    job: dg.JobDefinition, instance: dg.DagsterInstance, what: str, partition: str | None = None,
    assets: Sequence[dg.AssetKey] | None = None, run_config: dict | None = None,
) -> bool:  # fmt: skip
    """Run (part of) a job on the instance and report failed steps and checks; whether it succeeded."""
    result = job.execute_in_process(
        instance=instance,
        partition_key=partition,
        asset_selection=list(assets) if assets is not None else None,
        run_config=run_config or QUIET_RUN,
        raise_on_error=False,
        tags={"mmrecipe/launched_by": "cli"},
    )
    return _report(result, what)


def ingest_drop(settings: Settings, folder: Path, drop: str | None = None, reference_texts: Path | None = None) -> bool:
    """Land a folder as a drop, register its partition and materialize the drop stages.

    raw_crawl runs first; a drop without one usable response record stops there, with its reject reasons.
    The quality classifier is trained next if it never was, or again on `reference_texts` when given (else on
    the reference texts installed with mmrecipe), then the remaining drop stages run. The summary names the
    top drop/reject reasons per stage.
    """
    drop = validate_drop_name(drop or folder.name)
    skipped = land_folder(settings, folder, drop)
    if skipped:
        shown = ", ".join(skipped[:5]) + (", …" if len(skipped) > 5 else "")
        click.echo(f"ingest {drop}: landed the WARC files only, skipped {len(skipped)} other files ({shown})")
    instance = _instance(settings)
    if not instance.has_dynamic_partition("drops", drop):
        instance.add_dynamic_partitions("drops", [drop])
    defs = _defs(settings)
    job = defs.resolve_job_def("drop_stages_job")
    raw, classifier = dg.AssetKey("raw_crawl"), dg.AssetKey("quality_classifier")
    if not _execute(job, instance, f"ingest {drop}: raw_crawl", drop, [raw]):
        return False
    index = _latest_metadata(instance, "raw_crawl", drop) or {}
    if not index.get("responses"):
        n = index.get("total", 0)
        click.echo(
            f"ingest {drop}: FAILED: no usable HTTP response record in {folder} "
            f"({n} record{'' if n == 1 else 's'}: {top_reasons(index) or 'no reject reasons'})",
            err=True,
        )
        return False
    ok = True
    untrained = instance.get_latest_materialization_event(classifier) is None
    if classifier in defs.resolve_all_asset_keys() and (untrained or reference_texts):
        global_job = defs.resolve_implicit_global_asset_job_def()
        positives = {"positive_texts_file": str(reference_texts.resolve())} if reference_texts else {}
        run_config = {**QUIET_RUN, "ops": {"quality_classifier": {"config": positives}}}
        ok = _execute(global_job, instance, "train quality_classifier", assets=[classifier], run_config=run_config)
    rest = sorted(k for k in job.asset_layer.executable_asset_keys if k != raw)
    ok = ok and _execute(job, instance, f"ingest {drop}", drop, rest)
    click.echo(stage_summary(settings, [drop], [k.to_user_string() for k in [raw, *rest]]))
    return ok


def check_recipe(settings: Settings, recipe: str) -> None:
    """Validate RECIPE before any run starts; a ClickException carries the recipe's own one-line error."""
    from mmrecipe.recipe import RecipeError, load_recipe

    folder = Path(settings.recipes_dir)
    if not folder.is_dir():
        raise click.ClickException(
            f"recipes folder {folder} does not exist: set MMRECIPE_RECIPES to a folder of <name>.yaml recipes"
        )
    keys = recipe_keys(settings.recipes_dir)
    if recipe not in keys:
        raise click.ClickException(f"unknown recipe {recipe!r}: choose one of {keys} (files in {folder})")
    try:
        load_recipe(settings.recipes_dir, recipe)
    except RecipeError as e:
        raise click.ClickException(str(e)) from None


def build_recipe(settings: Settings, recipe: str, eval_config: dict | None = None) -> bool:
    """Materialize the recipe stages (mixture, eval_results, release) for one recipe over all drops."""
    check_recipe(settings, recipe)
    job = _defs(settings).resolve_job_def("recipe_stages_job")
    if not job.asset_layer.executable_asset_keys:
        raise click.ClickException("no recipe-stage assets are defined in this code location")
    run_config = {**QUIET_RUN, "ops": {"eval_results": {"config": eval_config}}} if eval_config else QUIET_RUN
    instance = _instance(settings)
    ok = _execute(job, instance, f"build {recipe}", recipe, run_config=run_config)
    quarantined = (_latest_metadata(instance, "mixture", recipe) or {}).get("quarantined_drops", "none")
    if quarantined != "none":  # the gate left drops out: say which and why, not just "ok"
        click.echo(f"  quarantined drops (left out of mixture[{recipe}]):\n{quarantined}")
    return ok


def build_leaderboard(settings: Settings) -> bool:
    """Materialize the leaderboard over every recipe's eval_results."""
    defs = _defs(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    return _execute(job, _instance(settings), "leaderboard", assets=[dg.AssetKey("leaderboard")])


def _eval_config(preset: str, seeds: str | None, train_tokens: int | None) -> dict:
    """eval_results' run config: a named preset (mmrecipe.proxy_eval.presets) and the options that override it."""
    config: dict = {"preset": preset} | ({"seeds": [int(s) for s in seeds.split(",")]} if seeds else {})
    return config | ({"train_tokens": train_tokens} if train_tokens else {})


def _latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str | None) -> dict | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    if not records:
        return None
    mat = records[0].asset_materialization
    return {k: getattr(v, "value", v) for k, v in (mat.metadata if mat else {}).items()}


def top_reasons(meta: dict, top: int = 3) -> str:
    """The `top` most frequent drop/reject reasons in a materialization's metadata, e.g. `garbage_bytes 1`."""
    counts = [(v, k) for k, v in meta.items() if k.startswith(("dropped_", "rejected_")) and isinstance(v, int) and v]
    return ", ".join(f"{k.split('_', 1)[1]} {v}" for v, k in sorted(counts, key=lambda c: (-c[0], c[1]))[:top])


def stage_summary(settings: Settings, drops: Sequence[str], stages: Sequence[str], header: bool = True) -> str:
    """A plain-text table of total/kept/dropped/rejected and top reasons per partition and stage, from the instance."""
    instance = _instance(settings)
    head = f"{'stage':<20} {'partition':<16} {'total':>7} {'kept':>7} {'dropped':>8} {'rejected':>9}  top reasons"
    lines = [head][: int(header)]
    for stage in stages:
        for drop in drops:
            meta = _latest_metadata(instance, stage, drop)
            if meta is None:
                lines.append(f"{stage:<20} {drop:<16} {'(not materialized)':>34}")
                continue
            cells = [meta.get(k, "") for k in ("total", "kept", "dropped", "rejected")]
            cells[1] = meta.get("kept", meta.get("dagster/row_count", ""))
            row = f"{stage:<20} {drop:<16} {cells[0]:>7} {cells[1]:>7} {cells[2]:>8} {cells[3]:>9}"
            lines.append(f"{row}  {top_reasons(meta)}".rstrip())
    return "\n".join(lines)


@click.group()
def main() -> None:
    """mmrecipe: multimodal WARC drops → deduplicated stages → evaluated training mixtures."""


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--drop", "drop", default=None, help="Drop name (default: the folder name).")
@click.option(
    "--reference-texts",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="(Re)train the quality classifier on these reference documents (UTF-8, separated by blank lines) "
    "instead of the Python Language Reference installed with mmrecipe.",
)
def ingest(folder: Path, drop: str | None, reference_texts: Path | None) -> None:
    """Land FOLDER as a drop, register it and materialize its drop stages."""
    try:
        ok = ingest_drop(environment_settings(), folder, drop, reference_texts)
    except DropError as e:
        raise click.ClickException(str(e)) from None
    sys.exit(0 if ok else 1)


def _eval_options(default: str) -> Callable:
    """The --eval-preset, --seeds and --train-tokens options of `build` and `demo`."""

    def add(f: Callable) -> Callable:
        f = click.option("--train-tokens", type=int, default=None, help="Tokens each proxy model trains on.")(f)
        f = click.option("--seeds", default=None, help="Comma-separated proxy-model seeds (default: the preset's).")(f)
        presets = click.Choice(sorted(EVAL_PRESETS))
        return click.option("--eval-preset", type=presets, default=default, show_default=True,
                            help="Proxy-eval budget (mmrecipe.proxy_eval.presets).")(f)  # fmt: skip

    return add


@main.command()
@click.argument("recipe")
@_eval_options("full")
def build(recipe: str, eval_preset: str, seeds: str | None, train_tokens: int | None) -> None:
    """Build RECIPE's mixture, evaluate it and release it if every blocking check passed."""
    from mmrecipe.proxy_eval.report import recipe_report

    settings = environment_settings()
    ok = build_recipe(settings, recipe, _eval_config(eval_preset, seeds, train_tokens)) and build_leaderboard(settings)
    if ok:
        click.echo(recipe_report(storage_resources(settings)[0].storage(), recipe))
    sys.exit(0 if ok else 1)


@main.command()
@_eval_options("demo")
def demo(eval_preset: str, seeds: str | None, train_tokens: int | None) -> None:
    """Ingest the bundled sample drops, build every recipe, rank them, and print a per-stage summary."""
    from mmrecipe.proxy_eval.report import format_leaderboard

    settings = environment_settings()
    folders = sorted(p for p in SAMPLE_DROPS.iterdir() if p.is_dir()) if SAMPLE_DROPS.is_dir() else []
    if not folders:
        raise click.ClickException(
            f"no sample drops found in {SAMPLE_DROPS}: `mmrecipe demo` runs the sample drops of a source checkout "
            "(samples/drops); with an installed package, `mmrecipe ingest` your own drop folders instead"
        )
    recipes = recipe_keys(settings.recipes_dir)
    for recipe in recipes:
        check_recipe(settings, recipe)
    ok = all([ingest_drop(settings, f) for f in folders])
    if ok:
        ok = all([build_recipe(settings, r, _eval_config(eval_preset, seeds, train_tokens)) for r in recipes])
    if ok:
        ok = build_leaderboard(settings)
    drops = [f.name for f in folders]
    drop_stages = ["raw_crawl", "filtered_text", "extracted_text", "deduped_images", "transcribed_audio"]
    defined = {k.to_user_string() for k in _defs(settings).resolve_all_asset_keys()}
    click.echo("\n" + stage_summary(settings, drops, [s for s in drop_stages if s in defined]))
    click.echo(stage_summary(settings, recipes, ["mixture", "eval_results", "release"], header=False))
    if ok:
        click.echo("\n" + format_leaderboard(storage_resources(settings)[0].storage(), recipes))
    sys.exit(0 if ok else 1)


def _show_target(settings: Settings, asset: str, partition: str | None) -> tuple[dict, str | None]:
    """The latest materialization metadata of ASSET[PARTITION]; a ClickException names what is wrong."""
    defs = _defs(settings)
    graph = defs.resolve_asset_graph()
    names = sorted(k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).is_materializable)
    if asset not in names:
        raise click.ClickException(f"unknown asset {asset!r}: choose one of {', '.join(names)}")
    instance = _instance(settings)
    partitions_def = graph.get(dg.AssetKey(asset)).partitions_def
    if partitions_def is None:
        if partition:
            raise click.ClickException(f"{asset} is not partitioned: run `mmrecipe show {asset}`")
        partition = None
    else:
        keys = partitions_def.get_partition_keys(dynamic_partitions_store=instance)
        if partition not in keys:
            choices = ", ".join(keys) if keys else "none yet (run `mmrecipe ingest DIR` first)"
            wrong = (
                f"unknown partition {partition!r} of {asset}" if partition is not None else f"{asset} is partitioned"
            )
            raise click.ClickException(f"{wrong}: choose one of {choices}")
    meta = _latest_metadata(instance, asset, partition)
    if meta is None:
        run = {dg.DynamicPartitionsDefinition: "ingest DIR", type(None): "ingest DIR` / `mmrecipe build RECIPE"}
        what = run.get(type(partitions_def), "build RECIPE")
        raise click.ClickException(
            f"{asset}[{partition or ''}] has no materialization yet: run `mmrecipe {what}` first"
        )
    return meta, partition


def _one_line_metadata(meta: dict) -> str:
    """The metadata values that fit on a line: counts first when the asset has them."""
    counts = [k for k in ("total", "kept", "dropped", "rejected") if k in meta]
    keys = counts or [
        k for k, v in meta.items()
        if not k.startswith("dagster/") and not k.endswith("path") and isinstance(v, int | float | str)
        and "\n" not in str(v) and len(str(v)) <= 80
    ]  # fmt: skip
    return "  ".join(f"{k}={meta[k]}" for k in keys)


@main.command()
@click.argument("asset")
@click.argument("partition", required=False)
@click.option("--rows", default=5, show_default=True, help="How many sample rows to print.")
def show(asset: str, partition: str | None, rows: int) -> None:
    """Counts, drop reasons and sample rows of one materialized ASSET [PARTITION]."""
    from mmrecipe.preview import one_line, preview_lines

    settings = environment_settings()
    meta, partition = _show_target(settings, asset, partition)
    storage = storage_resources(settings)[0].storage()
    click.echo(f"{asset}[{partition or ''}]  {meta.get('path', '(no path recorded)')}")
    click.echo("  " + _one_line_metadata(meta))
    rejects = meta.get("rejects_path")
    if rejects:
        table = storage.dataset(rejects).to_table(columns=["outcome", "reason"])
        if table.num_rows:
            counts = table.group_by(["outcome", "reason"]).aggregate([("reason", "count")])
            click.echo("  drop/reject reasons:")
            for r in sorted(counts.to_pylist(), key=lambda r: -r["reason_count"]):
                click.echo(f"    {r['outcome']:<9} {one_line(r['reason'], 40):<32} {r['reason_count']}")
    if "path" in meta:
        for line in preview_lines(storage, str(meta["path"]), rows):
            click.echo(f"  {line}")


@main.command()
@click.argument("asset")
@click.argument("partition", required=False)
def verify(asset: str, partition: str | None) -> None:
    """Check each committed part of ASSET [PARTITION] (default: every committed one) against its commit's digest."""
    from mmrecipe.stage_output import is_committed, stage_partitions, verify_partition

    lake = storage_resources(environment_settings())[0].storage()
    partitions = (
        [partition] if partition else [p for p in stage_partitions(lake, asset) if is_committed(lake, asset, p)]
    )
    if not partitions:
        raise click.ClickException(f"{asset} has no committed partition in {lake.root}: materialize it first")
    try:
        problems = [problem for p in partitions for problem in verify_partition(lake, asset, p)]
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    for problem in problems:
        click.echo(problem, err=True)
    click.echo(f"{asset}: {len(partitions)} partition(s) checked, {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


def lake_listing(settings: Settings) -> list[str]:
    """Lines naming every landed drop, recipe, release and stage data tree, with its path."""
    from data_assets.automation import landed_drops
    from mmrecipe.mixture.manifest import mixture_uri
    from mmrecipe.mixture.release import RELEASES, latest_release
    from mmrecipe.stage_output import DATA, stage_partitions

    lake = storage_resources(settings)[0].storage()
    landing = storage_resources(settings)[1].storage()
    drops = sorted(landed_drops(landing))
    lines = [f"drops ({len(drops)}) in {landing.root}"]
    indexed = set(stage_partitions(lake, "raw_crawl"))
    lines += [f"  {d:<28} {landing.uri(d)}{'' if d in indexed else '  (not ingested)'}" for d in drops]
    recipes = recipe_keys(settings.recipes_dir)
    lines.append(f"recipes ({len(recipes)}) in {settings.recipes_dir}")
    lines += [f"  {r:<28} mixture {mixture_uri(lake, r)}" for r in recipes]
    lines.append(f"releases in {lake.uri(RELEASES)}")
    for recipe in recipes:
        version = latest_release(lake, recipe)
        where = lake.uri(RELEASES, recipe, version) if version else "not released"
        lines.append(f"  {recipe:<28} LATEST={version or '-'}  {where}")
    lines.append(f"stage tables in {lake.root} (kept rows of every drop: <asset>/{DATA}/**/*.parquet)")
    for asset in ("raw_crawl", "filtered_text", "extracted_text", "deduped_images", "transcribed_audio"):
        parts = stage_partitions(lake, asset)
        lines.append(f"  {asset:<28} {lake.uri(asset, DATA)}  ({len(parts)} drops)")
    return lines


@main.command(name="ls")
def ls_command() -> None:
    """List landed drops, recipes, releases and stage tables, with their paths."""
    for line in lake_listing(environment_settings()):
        click.echo(line)


@main.command()
@click.argument("doc_id")
def explain(doc_id: str) -> None:
    """Lineage of one mixture document: recipe → mixture → stage row → raw_crawl record → WARC bytes."""
    from mmrecipe import lineage

    settings = environment_settings()
    storage = storage_resources(settings)[0].storage()
    landing = storage_resources(settings)[1].storage()
    try:
        click.echo(lineage.format_lineage(lineage.explain(storage, doc_id, landing=landing)))
    except LookupError as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.argument("recipe_a")
@click.argument("recipe_b")
@click.option("--sample", default=3, show_default=True, help="Documents shown from each side.")
def diff(recipe_a: str, recipe_b: str, sample: int) -> None:
    """What differs between RECIPE_A's and RECIPE_B's mixtures: documents, token shares, recipe changes."""
    from mmrecipe.mixture.diff import diff_mixtures

    settings = environment_settings()
    storage = storage_resources(settings)[0].storage()
    try:
        result = diff_mixtures(storage, recipe_a, recipe_b, recipe_keys(settings.recipes_dir), sample)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(result.markdown())
