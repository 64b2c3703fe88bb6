"""Fixtures of the production-path tests: real Postgres, moto S3, helm (defined in prod_support)."""

from tests.production.prod_support import (  # noqa: F401 - fixtures are registered by being here
    helm,
    in_cluster_service_account,
    postgres_cluster,
    postgres_server,
    s3_requests,
    s3_server,
)
