"""Thin Dagster wrappers over mmrecipe: one module per stage, plus checks and the Definitions."""

import warnings

import dagster as dg

# Per-partition asset checks (AssetCheckSpec.partitions_def) are a preview feature in Dagster 1.13;
# mmrecipe relies on them deliberately so every drop's checks gate that drop.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*", category=dg.PreviewWarning)
