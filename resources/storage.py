"""The lake and landing resources: storage roots that are a local folder or an s3:// prefix."""

from typing import Any

import dagster as dg

from mmrecipe.settings import Settings
from mmrecipe.storage import Storage
from resources.engine import EngineResource
from resources.settings import deployment_settings
from resources.transcriber import TranscriberResource


class StorageResource(dg.ConfigurableResource):
    """A storage root: a local folder or `s3://bucket/prefix`, plus an optional S3 endpoint."""

    root: str
    endpoint_url: str | None = None
    region: str | None = None
    scratch: str | None = None

    def storage(self) -> Storage:
        """The pure-library view of this root."""
        return Storage(self.root, endpoint_url=self.endpoint_url, region=self.region, scratch=self.scratch)


class LakeResource(StorageResource):
    """The lake: every stage writes its tables below `<root>/<asset>/<partition>/`."""


class LandingResource(StorageResource):
    """The landing location: each source drop is a folder of WARC files plus `_MANIFEST.json`."""


def storage_resources(settings: Settings) -> tuple[LakeResource, LandingResource]:
    """The lake and landing resources of `settings` (S3 endpoint, region and local scratch included)."""
    common = {"endpoint_url": settings.s3_endpoint_url, "region": settings.s3_region, "scratch": settings.tmp_dir}
    return LakeResource(root=settings.lake, **common), LandingResource(root=settings.landing, **common)


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    """The resources of the code location: `settings` (default: the deployment's) and what is built from it."""
    settings = settings or deployment_settings()
    lake, landing = storage_resources(settings)
    return {
        "lake": lake,
        "landing": landing,
        "transcriber": TranscriberResource.from_settings(settings),
        "engine": EngineResource.from_settings(settings),
        "settings": settings,
    }
