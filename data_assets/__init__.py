"""Thin Dagster wrappers over mmrecipe: one module per stage, plus checks and the Definitions."""
