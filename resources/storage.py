"""The lake and landing resources: storage roots that are a local folder or an s3:// prefix."""

from typing import Any

import dagster as dg

from mmrecipe.settings import Settings
from mmrecipe.storage import Storage
from resources.s3 import build_s3_resource
from resources.transcriber import TranscriberResource


class StorageResource(dg.ConfigurableResource):
    """A storage root: a local folder or `s3://bucket/prefix`, plus an optional S3 endpoint."""

    root: str
    endpoint_url: str | None = None

    def storage(self) -> Storage:
        """The pure-library view of this root."""
        return Storage(self.root, endpoint_url=self.endpoint_url)


class LakeResource(StorageResource):
    """The lake: every stage writes its tables below `<root>/<asset>/<partition>/`."""


class LandingResource(StorageResource):
    """The landing location: each source drop is a folder of WARC files plus `_MANIFEST.json`."""


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    """The resources of the code location, configured from the environment."""
    settings = settings or Settings.from_env()
    return {
        "lake": LakeResource(root=settings.lake, endpoint_url=settings.s3_endpoint_url),
        "landing": LandingResource(root=settings.landing, endpoint_url=settings.s3_endpoint_url),
        "s3": build_s3_resource(settings),
        "transcriber": TranscriberResource.from_env(),
    }
