"""The partition definitions, declared once: source drops (dynamic) and recipes (one per YAML)."""

import dagster as dg

from mmrecipe.drops import DropError, validate_drop_name
from mmrecipe.settings import recipe_keys
from resources.settings import deployment_settings

# Asset checks take these partitions too (`@dg.asset_check(partitions_def=...)`), a Dagster 1.13 preview
# feature whose PreviewWarning is deliberately left visible: a check result must belong to one drop (or
# recipe), so that a failed drop is quarantined alone (mmrecipe.quarantine) while every other drop still
# mixes, and release is gated per recipe. Unpartitioned checks would let one drop's failure block them all.
drops_partitions = dg.DynamicPartitionsDefinition(name="drops")
recipes_partitions = dg.StaticPartitionsDefinition(recipe_keys(deployment_settings().recipes_dir))


def drop_key(context: dg.AssetExecutionContext) -> str:
    """The run's drop partition key, if it is a safe drop name. A hostile key (`../../x`, addable from the UI or
    API) fails the step at once, without retries: retrying cannot make it safe."""
    try:
        return validate_drop_name(context.partition_key)
    except DropError as e:
        raise dg.Failure(description=str(e), allow_retries=False) from None


__all__ = ["drop_key", "drops_partitions", "recipes_partitions"]
