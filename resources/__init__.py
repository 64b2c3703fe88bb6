"""Dagster resources: the lake, the landing location and the settings they come from."""

from resources.storage import LakeResource, LandingResource, build_resources

__all__ = ["LakeResource", "LandingResource", "build_resources"]
