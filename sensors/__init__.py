"""Sensors: the source-drop sensor that starts runs when a complete drop lands."""

from sensors.source_drops import source_drops

SENSORS = [source_drops]

__all__ = ["SENSORS", "source_drops"]
