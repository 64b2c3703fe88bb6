"""mmrecipe: the pure library behind the multimodal data-recipe asset graph (no dagster here)."""

__version__ = "0.1.0"
