"""The partition definitions, declared once: source drops (dynamic) and recipes (one per YAML)."""

import dagster as dg

from mmrecipe.settings import Settings, recipe_keys

drops_partitions = dg.DynamicPartitionsDefinition(name="drops")
recipes_partitions = dg.StaticPartitionsDefinition(recipe_keys(Settings.from_env().recipes_dir))

__all__ = ["drops_partitions", "recipes_partitions"]
