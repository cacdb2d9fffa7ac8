"""Fixtures of the fault tests: one private PostgreSQL server for the session (never the
machine's shared one) and two ``devicelink serve`` processes on it (see cluster.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.cluster import Cluster, Deployment, deployments, private_postgres
from tests.support.servers import wait_until_answering

VARIANTS = {
    # The default: the fast path answers pending polls and key checks (on PostgreSQL,
    # with one statement on asyncpg's own pool).
    "fast_path": {"fast_path": "true"},
    # Every request through the FastAPI routes and SQLAlchemy.
    "general_path": {"fast_path": "false"},
}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A private PostgreSQL with a migrated template database; stopped (``pg_ctl stop -m
    immediate``) and its directory removed when the session ends."""
    with private_postgres() as postgres:
        yield Cluster(postgres, tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="session")
def all_servers(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Deployment]]:
    """``devicelink serve`` in each of :data:`VARIANTS`, on one database of the cluster.
    They outlive every outage of the session: surviving them is the point."""
    with deployments(cluster, tmp_path_factory.mktemp("servers"), VARIANTS) as started:
        yield started


@pytest.fixture
def servers(cluster: Cluster, all_servers: dict[str, Deployment]) -> dict[str, Deployment]:
    """:func:`all_servers`, with PostgreSQL running (a test before may have stopped it)
    and every server ready again."""
    cluster.ensure_running()
    for dep in all_servers.values():
        wait_until_answering(dep.server, "/readyz")
    return all_servers
