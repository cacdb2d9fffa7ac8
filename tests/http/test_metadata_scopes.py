"""RFC 8414 ``scopes_supported``: the scopes registered clients really have (issue 16),
read from the clients once in a while, not at every metadata request."""

from __future__ import annotations

import pytest

from devicelink.runtime.clients import SCOPES_FRESH_FOR, scopes_supported
from tests.http.contract import RegisterClient
from tests.support.app import Server

pytestmark = pytest.mark.anyio

METADATA = "/.well-known/oauth-authorization-server"


@pytest.mark.rfc("8414", "2")
async def test_scopes_supported_is_the_union_of_the_clients_scopes(
    server: Server, register_client: RegisterClient
) -> None:
    await register_client(server, "deploy-bot", scopes=("deploy", "read"))
    await register_client(server, "reader", scopes=("read",))
    body = (await server.http.get(METADATA)).json()
    assert body["scopes_supported"] == ["api", "deploy", "read"]  # devicelink-cli: api


@pytest.mark.rfc("8414", "2")
async def test_a_client_added_later_is_listed_within_the_freshness_bound(
    server: Server, register_client: RegisterClient
) -> None:
    """A client added by another process (``devicelink clients add``) appears once the
    list is older than SCOPES_FRESH_FOR; until then the list is served from memory."""
    store = server.runtime.store
    assert await scopes_supported(store, monotonic=lambda: 1000.0) == ["api"]
    await register_client(server, "deploy-bot", scopes=("deploy",))
    # No read of the clients in between: the stored client is not seen yet.
    assert await scopes_supported(store, monotonic=lambda: 1000.0 + SCOPES_FRESH_FOR - 1) == ["api"]
    later = 1000.0 + SCOPES_FRESH_FOR + 1
    assert await scopes_supported(store, monotonic=lambda: later) == ["api", "deploy"]
