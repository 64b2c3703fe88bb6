"""leaderboard: every recipe's eval results at its best learning rate, with noise floors and stability verdicts."""

import dagster as dg

from data_assets.jobs import STEP_RETRY_POLICY
from data_assets.plots import leaderboard_png, png_md
from data_assets.stage_metadata import column_schema
from mmrecipe.proxy_eval.leaderboard import RULE
from mmrecipe.proxy_eval.report import SCORES_SCHEMA, write_leaderboard
from partitions import recipes_partitions
from resources import LakeResource


@dg.asset(
    retry_policy=STEP_RETRY_POLICY,
    group_name="reports",
    kinds={"markdown", "parquet"},
    owners=["team:research-data"],
    code_version="2",  # 2: best learning rate, stability verdicts, noise floor
    deps=[dg.AssetDep("eval_results", partition_mapping=dg.AllPartitionMapping())],
    metadata={"dagster/column_schema": column_schema(SCORES_SCHEMA)},
)
def leaderboard(lake: LakeResource) -> dg.MaterializeResult:
    """Bits per byte of every evaluated recipe per eval set at its best learning rate, and which orders are stable."""
    board = write_leaderboard(lake.storage(), recipes_partitions.get_partition_keys(), leaderboard_png)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(board.markdown_uri),
            "scores_path": dg.MetadataValue.path(board.scores_uri),
            "dagster/row_count": len(board.ranking.scores),
            "recipes": ", ".join(board.recipes) or "none",
            "stability_rule": RULE,
            "stable_pairs": int(sum(p.stable for p in board.ranking.pairs)),
            "pairs": len(board.ranking.pairs),
            "leaderboard": dg.MetadataValue.md(board.markdown),
            "plot": png_md(board.png, "bits per byte by recipe") if board.png else dg.MetadataValue.md("no results"),
        }
    )
