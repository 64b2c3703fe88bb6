"""Sensors: the source-drop sensor that starts runs when a complete drop lands, and the stale-drop sensors."""

from sensors.source_drops import source_drops
from sensors.stale_drops import audio_dedup_refresh, stale_image_drops, stale_video_drops, text_dedup_refresh

SENSORS = [source_drops, text_dedup_refresh, stale_image_drops, audio_dedup_refresh, stale_video_drops]

__all__ = [
    "SENSORS",
    "audio_dedup_refresh",
    "source_drops",
    "stale_image_drops",
    "stale_video_drops",
    "text_dedup_refresh",
]
