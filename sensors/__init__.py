"""Sensors: the source-drop sensor that starts runs when a complete drop lands, and the dedup refresh sensors."""

from sensors.dedup_refresh import audio_dedup_refresh, text_dedup_refresh
from sensors.source_drops import source_drops

SENSORS = [source_drops, text_dedup_refresh, audio_dedup_refresh]

__all__ = ["SENSORS", "audio_dedup_refresh", "source_drops", "text_dedup_refresh"]
