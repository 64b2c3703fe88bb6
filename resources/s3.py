"""A resumable listing of drop folders for the source-drop sensor, on S3 or a local landing root.

Drop folders are listed one level deep (`Delimiter="/"`), a page at a time, starting after the
last folder a previous tick resolved (`StartAfter`), so a tick costs one request per
`page_size` *new* drops instead of a walk over every WARC file ever landed. The listing uses the
landing root's own boto3 client (`Storage.s3_client`: its endpoint, region and retries), so the
Definitions need no separate S3 resource and import no boto3 until a tick lists S3.
"""

from collections.abc import Iterator

from mmrecipe.storage import Storage, split_s3_uri

# Everything in folder NAME has a key starting "NAME/"; NAME + "0" sorts after all of them ('0' follows '/').
_PAST_FOLDER = chr(ord("/") + 1)


def folder_key(name: str) -> str:
    """The sort key that orders drop folders the way S3 lists them: by `NAME/`."""
    return name + "/"


def _folder_prefix(root_key: str) -> str:
    return f"{root_key.strip('/')}/" if root_key.strip("/") else ""


def iter_s3_folders(client: object, root_uri: str, start_after: str = "", page_size: int = 1000) -> Iterator[str]:
    """Names of the folders directly under `root_uri`, in S3 key order, after folder `start_after`.

    Pages are fetched lazily with list_objects_v2 (Delimiter "/", StartAfter), so a caller that
    stops early never asks for the rest.
    """
    bucket, key = split_s3_uri(root_uri)
    prefix = _folder_prefix(key)
    kwargs: dict[str, object] = {
        "Bucket": bucket,
        "Prefix": prefix,
        "Delimiter": "/",
        "PaginationConfig": {"PageSize": page_size},
    }
    if start_after:
        kwargs["StartAfter"] = prefix + start_after + _PAST_FOLDER
    for page in client.get_paginator("list_objects_v2").paginate(**kwargs):  # type: ignore[attr-defined]
        for common in page.get("CommonPrefixes", []):
            yield common["Prefix"][len(prefix) :].rstrip("/")


def iter_local_folders(storage: Storage, start_after: str = "") -> Iterator[str]:
    """Names of the folders directly under a local root, in the same order and with the same rule as S3."""
    names = sorted(storage.list_dirs(storage.root), key=folder_key)
    yield from (n for n in names if not start_after or folder_key(n) > folder_key(start_after))


def iter_drop_folders(storage: Storage, start_after: str = "", page_size: int = 1000) -> Iterator[str]:
    """Folder names under the landing root after `start_after`: S3 through its client, local through the filesystem."""
    if storage.is_s3:
        yield from iter_s3_folders(storage.s3_client, storage.root, start_after, page_size)
    else:
        yield from iter_local_folders(storage, start_after)
