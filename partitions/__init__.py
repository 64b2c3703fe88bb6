"""The partition definitions, declared once: source drops (dynamic) and recipes (one per YAML)."""

import dagster as dg

from mmrecipe.settings import recipe_keys
from resources.settings import deployment_settings

drops_partitions = dg.DynamicPartitionsDefinition(name="drops")
recipes_partitions = dg.StaticPartitionsDefinition(recipe_keys(deployment_settings().recipes_dir))

__all__ = ["drops_partitions", "recipes_partitions"]
