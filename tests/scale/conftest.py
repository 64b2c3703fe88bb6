"""Fixtures of the scale-out tests: one real multi-node Ray cluster on loopback, shared by the session."""

from collections.abc import Iterator

import pytest

from tests.scale.ray_cluster import RayCluster, ray_cluster_fixture


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A head (0 CPUs) and two 1-CPU worker nodes (the second declares one GPU), torn down with a leak check."""
    yield from ray_cluster_fixture()
