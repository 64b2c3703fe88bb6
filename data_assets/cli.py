"""The `mmrecipe` command line: ingest, build, demo, show and explain, through the same Definitions.

Every command runs on a real DagsterInstance at $DAGSTER_HOME (default `$MMRECIPE_HOME/dagster`,
SQLite) so runs, materializations and checks appear in the Dagster UI exactly as if launched there.
"""

import os
import shutil
import sys
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import click
import dagster as dg

from mmrecipe.drops import MANIFEST, DropError, manifest_for_folder, parse_manifest, validate_drop_name, verify_drop
from mmrecipe.settings import REPO_ROOT, Settings, recipe_keys
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


def land_folder(settings: Settings, folder: Path, drop: str) -> None:
    """Copy a local drop folder into the landing location; the manifest is written last."""
    validate_drop_name(drop)
    landing = storage_resources(settings)[1].storage()
    manifest_file = folder / MANIFEST
    if manifest_file.exists():
        manifest = parse_manifest(manifest_file.read_text(), str(manifest_file))
    else:
        manifest = manifest_for_folder(str(folder), drop)
    for entry in manifest.files:
        src = folder / entry.path
        if not src.is_file():
            raise DropError(f"{manifest_file}: lists {entry.path}, which is not in {folder}")
        landing.copy_file_in(str(src), landing.uri(drop, entry.path))
    landing.write_bytes(landing.uri(drop, MANIFEST), manifest.to_json().encode())
    verify_drop(landing, drop)


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

    raw_crawl runs first; the quality classifier is trained next if it never was, or again on
    `reference_texts` when given (else on the reference texts installed with mmrecipe), then the
    remaining drop stages run.
    """
    drop = validate_drop_name(drop or folder.name)
    land_folder(settings, folder, drop)
    instance = _instance(settings)
    if not instance.has_dynamic_partition("drops", drop):
        instance.add_dynamic_partitions("drops", [drop])
    defs = _defs(settings)
    job = defs.resolve_job_def("drop_stages_job")
    raw, classifier = dg.AssetKey("raw_crawl"), dg.AssetKey("quality_classifier")
    if not _execute(job, instance, f"ingest {drop}: raw_crawl", drop, [raw]):
        return False
    untrained = instance.get_latest_materialization_event(classifier) is None
    if classifier in defs.resolve_all_asset_keys() and (untrained or reference_texts):
        global_job = defs.resolve_implicit_global_asset_job_def()
        positives = {"positive_texts_file": str(reference_texts.resolve())} if reference_texts else {}
        run_config = {**QUIET_RUN, "ops": {"quality_classifier": {"config": positives}}}
        if not _execute(global_job, instance, "train quality_classifier", assets=[classifier], run_config=run_config):
            return False
    rest = sorted(k for k in job.asset_layer.executable_asset_keys if k != raw)
    return _execute(job, instance, f"ingest {drop}", drop, rest)


def build_recipe(settings: Settings, recipe: str, eval_config: dict | None = None) -> bool:
    """Materialize the recipe stages (mixture, eval_results, release) for one recipe over all drops."""
    keys = recipe_keys(settings.recipes_dir)
    if recipe not in keys:
        raise click.ClickException(f"unknown recipe {recipe!r}: choose one of {keys} (files in {settings.recipes_dir})")
    job = _defs(settings).resolve_job_def("recipe_stages_job")
    if not job.asset_layer.executable_asset_keys:
        raise click.ClickException("no recipe-stage assets are defined in this code location")
    run_config = {**QUIET_RUN, "ops": {"eval_results": {"config": eval_config}}} if eval_config else QUIET_RUN
    return _execute(job, _instance(settings), f"build {recipe}", recipe, run_config=run_config)


def build_leaderboard(settings: Settings) -> bool:
    """Materialize the leaderboard over every recipe's eval_results."""
    defs = _defs(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    return _execute(job, _instance(settings), "leaderboard", assets=[dg.AssetKey("leaderboard")])


def _eval_config(seeds: str | None, train_tokens: int | None) -> dict | None:
    config: dict = {"seeds": [int(s) for s in seeds.split(",")]} if seeds else {}
    config |= {"train_tokens": train_tokens} if train_tokens else {}
    return config or None


def _latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str | None) -> dict | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    if not records:
        return None
    mat = records[0].asset_materialization
    return {k: getattr(v, "value", v) for k, v in (mat.metadata if mat else {}).items()}


def stage_summary(settings: Settings, drops: Sequence[str], stages: Sequence[str], header: bool = True) -> str:
    """A plain-text table of total/kept/dropped/rejected per partition and stage, from the instance."""
    instance = _instance(settings)
    lines = [f"{'stage':<20} {'partition':<16} {'total':>7} {'kept':>7} {'dropped':>8} {'rejected':>9}"][: int(header)]
    for stage in stages:
        for drop in drops:
            meta = _latest_metadata(instance, stage, drop)
            if meta is None:
                lines.append(f"{stage:<20} {drop:<16} {'(not materialized)':>34}")
                continue
            cells = [meta.get(k, "") for k in ("total", "kept", "dropped", "rejected")]
            cells[1] = meta.get("kept", meta.get("dagster/row_count", ""))
            lines.append(f"{stage:<20} {drop:<16} {cells[0]:>7} {cells[1]:>7} {cells[2]:>8} {cells[3]:>9}")
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
        ok = ingest_drop(Settings.from_env(), folder, drop, reference_texts)
    except DropError as e:
        raise click.ClickException(str(e)) from None
    sys.exit(0 if ok else 1)


@main.command()
@click.argument("recipe")
@click.option("--seeds", default=None, help="Comma-separated proxy-model seeds (default: eval_results' 0,1,2).")
@click.option("--train-tokens", type=int, default=None, help="Tokens each proxy model trains on.")
def build(recipe: str, seeds: str | None, train_tokens: int | None) -> None:
    """Build RECIPE's mixture, evaluate it and release it if every blocking check passed."""
    from mmrecipe.proxy_eval.report import recipe_report

    settings = Settings.from_env()
    ok = build_recipe(settings, recipe, _eval_config(seeds, train_tokens))
    click.echo(recipe_report(storage_resources(settings)[0].storage(), recipe))
    sys.exit(0 if ok else 1)


@main.command()
@click.option("--seeds", default=None, help="Comma-separated proxy-model seeds (default: eval_results' 0,1,2).")
@click.option("--train-tokens", type=int, default=None, help="Tokens each proxy model trains on.")
def demo(seeds: str | None, train_tokens: int | None) -> None:
    """Ingest the bundled sample drops, build every recipe, rank them, and print a per-stage summary."""
    from mmrecipe.proxy_eval.report import format_leaderboard

    settings = Settings.from_env()
    folders = sorted(p for p in SAMPLE_DROPS.iterdir() if p.is_dir()) if SAMPLE_DROPS.is_dir() else []
    if not folders:
        raise click.ClickException(
            f"no sample drops found in {SAMPLE_DROPS}: `mmrecipe demo` runs the sample drops of a source checkout "
            "(samples/drops); with an installed package, `mmrecipe ingest` your own drop folders instead"
        )
    ok = all([ingest_drop(settings, f) for f in folders])
    recipes = recipe_keys(settings.recipes_dir)
    if ok:
        ok = all([build_recipe(settings, r, _eval_config(seeds, train_tokens)) for r in recipes])
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


@main.command()
@click.argument("asset")
@click.argument("partition")
@click.option("--rows", default=5, show_default=True, help="How many sample rows to print.")
def show(asset: str, partition: str, rows: int) -> None:
    """Counts, drop reasons and sample rows of one materialized ASSET PARTITION."""
    settings = Settings.from_env()
    meta = _latest_metadata(_instance(settings), asset, partition)
    if meta is None or "path" not in meta:
        raise click.ClickException(
            f"{asset}[{partition}] has no materialization with a path: run `mmrecipe ingest` / `mmrecipe build` first"
        )
    storage = storage_resources(settings)[0].storage()
    click.echo(f"{asset}[{partition}]  {meta['path']}")
    click.echo("  " + "  ".join(f"{k}={meta[k]}" for k in ("total", "kept", "dropped", "rejected") if k in meta))
    rejects = meta.get("rejects_path")
    if rejects:
        table = storage.dataset(rejects).to_table(columns=["outcome", "reason"])
        if table.num_rows:
            counts = table.group_by(["outcome", "reason"]).aggregate([("reason", "count")])
            click.echo("  drop/reject reasons:")
            for r in sorted(counts.to_pylist(), key=lambda r: -r["reason_count"]):
                click.echo(f"    {r['outcome']:<9} {r['reason']:<32} {r['reason_count']}")
    data = storage.dataset(meta["path"]).head(rows)
    click.echo(f"  sample rows ({data.num_rows}):")
    for row in data.to_pylist():
        cells = {k: v for k, v in row.items() if not isinstance(v, bytes | bytearray)}
        text = "; ".join(f"{k}={str(v)[:60]!s}" for k, v in cells.items())
        click.echo(f"    - {text}")


@main.command()
@click.argument("doc_id")
def explain(doc_id: str) -> None:
    """Lineage of one mixture document: recipe → mixture → stage row → raw_crawl record → WARC bytes."""
    from mmrecipe import lineage

    settings = Settings.from_env()
    storage = storage_resources(settings)[0].storage()
    landing = storage_resources(settings)[1].storage()
    try:
        click.echo(lineage.format_lineage(lineage.explain(storage, doc_id, landing=landing)))
    except LookupError as e:
        raise click.ClickException(str(e)) from None
