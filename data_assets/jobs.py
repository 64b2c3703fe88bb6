"""The jobs users launch: all drop stages for one drop, and all recipe stages for one recipe."""

import dagster as dg

from partitions import drops_partitions, recipes_partitions

DROP_STAGES = "drop_stages"
RECIPE_STAGES = "recipe_stages"

drop_stages_job = dg.define_asset_job(
    "drop_stages_job",
    selection=dg.AssetSelection.groups(DROP_STAGES),
    partitions_def=drops_partitions,
    description="Every drop-partitioned stage for one source drop, with their checks.",
)
recipe_stages_job = dg.define_asset_job(
    "recipe_stages_job",
    selection=dg.AssetSelection.groups(RECIPE_STAGES),
    partitions_def=recipes_partitions,
    description="Mixture, evaluation and release for one recipe over all ingested drops.",
)
