"""Every revocation reaches the host's key issuer (issue 17, item 2; DESIGN.md
"Architecture"): the operator's ``devicelink keys revoke`` and ``devicelink users
disable``, run as real commands in a process of their own on the same database, queue
the revocation; the host process delivers it at start-up, on its periodic drain, or
when asked, once, retrying an issuer that fails. The host tells devicelink of a key it
revoked itself. Key checks refuse a revoked key at once, before any delivery.

Both databases (on PostgreSQL the key cache hears of the command's revocation by
NOTIFY).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
from examples.host_app.app import HostKeyIssuer, HostKeyStore, build_app

from devicelink.core.events import EventKind
from devicelink.core.models import ApiKey, AuditKind
from devicelink.core.ports import Transaction
from devicelink.runtime.settings import Settings
from devicelink.server import DeviceLink
from devicelink.service.admin import AdminService
from tests.embedding.hosts import PUBLIC, Host, hosting
from tests.support.app import FakeClock
from tests.support.databases import Database
from tests.support.processes import clean_env, run_devicelink

pytestmark = pytest.mark.anyio


async def devicelink_command(database: Database, tmp_path: Path, *args: str) -> str:
    """``devicelink ARGS`` as an operator runs it, on the test's database; its output."""
    env = clean_env(
        DEVICELINK_DATABASE_URL=database.url, DEVICELINK_DATA_DIR=str(tmp_path / "admin")
    )
    done = await anyio.to_thread.run_sync(lambda: run_devicelink(*args, env=env, cwd=tmp_path))
    assert done.returncode == 0, done.stderr
    return done.stdout


async def key_id_of(host: Host, key: str) -> int:
    async with host.runtime.store.transaction() as tx:
        found = await tx.api_keys.get_with_owner(host.runtime.hasher.api_key(key))
    assert found is not None
    return found[0].id


async def within(seconds: float, check: Callable[[], Awaitable[bool]]) -> float:
    """How long until ``check()`` holds (failing after ``seconds``)."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < seconds, "not within the bound"
        await anyio.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def clock() -> FakeClock:
    """The wall clock's time, movable: the operator's command runs on the wall clock."""
    moved = FakeClock()
    moved.now = datetime.now(UTC)
    return moved


@pytest.fixture
async def host(settings: Settings, clock: FakeClock) -> AsyncIterator[Host]:
    async with hosting(settings, clock) as started:
        yield started


async def test_keys_revoke_reaches_the_hosts_store_after_the_drain(
    host: Host, database: Database, tmp_path: Path
) -> None:
    key = await host.issue_key("alice")
    other = await host.issue_key("bob")
    assert (await host.me(key)).status_code == 200  # remembered, on PostgreSQL

    output = await devicelink_command(
        database, tmp_path, "keys", "revoke", str(await key_id_of(host, key))
    )
    assert output.startswith("revoked key")
    # devicelink refuses it at once (on PostgreSQL its cache hears by NOTIFY) ...
    await within(2.0, lambda: refused(host, key))
    # ... and the host hears of it when the host process drains the outbox.
    assert host.keys.revocations == []
    assert await host.pending_revocations() == 1
    assert await host.runtime.keys.revocations.drain() == 1
    assert host.keys.revocations == ["hk1"]
    assert host.keys.owner_of(key) is None
    assert host.keys.owner_of(other) == "bob"
    # Delivered once: draining again calls the issuer no more.
    assert await host.runtime.keys.revocations.drain() == 0
    assert host.keys.revocations == ["hk1"]
    assert [event.kind for event in host.events].count(EventKind.KEY_REVOKED) == 1


async def test_users_disable_revokes_the_users_keys_in_the_hosts_store(
    host: Host, database: Database, tmp_path: Path
) -> None:
    first = await host.issue_key("alice")
    flow = await host.approved_flow(await key_owner_id(host, first))
    second = (await host.poll(flow["device_code"])).json()["access_token"]
    bobs = await host.issue_key("bob")

    output = await devicelink_command(database, tmp_path, "users", "disable", "alice")
    assert output.strip() == "disabled alice"
    await within(2.0, lambda: refused(host, first))
    assert await refused(host, second)
    await host.runtime.keys.revocations.drain()
    assert sorted(host.keys.revocations) == ["hk1", "hk2"]
    assert host.keys.owner_of(bobs) == "bob"
    listing = await devicelink_command(database, tmp_path, "keys", "list", "--all")
    assert listing.count("revoked") == 2


async def test_the_host_process_drains_at_start_up(
    settings: Settings, clock: FakeClock, database: Database, tmp_path: Path
) -> None:
    keys = HostKeyStore()
    async with hosting(settings, clock, keys=keys) as host:
        key = await host.issue_key("alice")
        key_id = await key_id_of(host, key)
    # The host is stopped; the operator revokes the key meanwhile.
    await devicelink_command(database, tmp_path, "keys", "revoke", str(key_id))
    assert keys.revocations == []
    async with hosting(settings, clock, keys=keys) as host:
        await within(5.0, lambda: told(keys, "hk1"))
        assert await host.pending_revocations() == 0


async def test_the_host_process_drains_every_few_seconds(
    settings: Settings, clock: FakeClock, database: Database, tmp_path: Path
) -> None:
    async with hosting(settings, clock, revocation_drain_interval=1) as host:
        key = await host.issue_key("alice")
        await devicelink_command(
            database, tmp_path, "keys", "revoke", str(await key_id_of(host, key))
        )
        assert await within(3.0, lambda: told(host.keys, "hk1")) < 3.0


class FailingRevocations(HostKeyIssuer):
    """The host's issuer, whose ``revoke`` fails ``failures`` times first."""

    def __init__(self, store: HostKeyStore, failures: int) -> None:
        super().__init__(store)
        self.failures = failures
        self.calls = 0

    async def revoke(self, tx: Transaction, *, key: ApiKey, now: datetime) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("the host's key service is down")
        await super().revoke(tx, key=key, now=now)


async def test_an_issuer_that_fails_to_revoke_is_retried_later_and_never_twice(
    settings: Settings, clock: FakeClock
) -> None:
    keys = HostKeyStore()
    issuer = FailingRevocations(keys, failures=2)
    async with hosting(settings, clock, issuer=issuer, keys=keys) as host:
        key = await host.issue_key("alice")
        # The device's logout: answered, and the key refused at once, though the host
        # could not be told yet.
        assert (await host.revoke(key)).status_code == 200
        assert await refused(host, key)
        assert (issuer.calls, keys.revocations) == (1, [])
        assert await host.pending_revocations() == 1
        assert await host.runtime.keys.revocations.drain() == 0  # not due yet
        assert issuer.calls == 1
        clock.advance(10)  # the first retry
        assert await host.runtime.keys.revocations.drain() == 0  # fails again
        async with host.runtime.store.transaction() as tx:
            (pending,) = await tx.issuer_revocations.due(
                now=clock.now + timedelta(hours=1), limit=5
            )
        assert pending.attempts == 2
        assert pending.last_error == "ConnectionError: the host's key service is down"
        clock.advance(20)  # the retry after that doubles
        assert await host.runtime.keys.revocations.drain() == 1
        assert (issuer.calls, keys.revocations) == (3, ["hk1"])
        clock.advance(3600)
        assert await host.runtime.keys.revocations.drain() == 0
        assert issuer.calls == 3


# --- the host revokes a key itself, and tells devicelink ---------------------------------


@pytest.fixture
async def example(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The example host app (examples/host_app), devicelink under /auth."""
    app = build_app(settings.model_copy(update={"public_url": f"{PUBLIC}/auth"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as http:
            yield http


async def example_key(http: httpx.AsyncClient, username: str) -> str:
    """The host's user signs in to the host, and approves a device."""
    runtime = DeviceLink.runtime_of(http._transport.app)  # type: ignore[attr-defined]
    await http.post("/host/login", params={"username": username})
    assert (await http.get("/auth/oauth/device/verify")).status_code == 200
    async with runtime.store.transaction() as tx:
        user = await tx.users.get_by_subject("host", username)
    assert user is not None
    flow = (await http.post("/auth/oauth/device/authorize", data={})).json()
    assert await runtime.flows.approve(flow["user_code"], user_id=user.id) == "ok"
    token = await http.post("/auth/oauth/device/token", data={"device_code": flow["device_code"]})
    assert token.status_code == 200, token.text
    key: str = token.json()["access_token"]
    return key


async def test_a_key_the_host_revoked_itself_stops_working_at_devicelink(
    example: httpx.AsyncClient,
) -> None:
    app = example._transport.app  # type: ignore[attr-defined]
    store: HostKeyStore = app.state.host_keys
    key = await example_key(example, "alice")
    auth = {"Authorization": f"Bearer {key}"}
    assert (await example.get("/auth/api/me", headers=auth)).status_code == 200  # remembered

    revoked = await example.post("/host/keys/hk1/revoke")
    assert revoked.json() == {"revoked": True}
    assert store.revocations == ["hk1"]  # the host's own revocation, once
    me = await example.get("/auth/api/me", headers=auth)
    assert me.status_code == 401  # at once, the key cache included
    devices = await example.get("/auth/devices")
    assert 'class="badge">revoked<' in devices.text
    assert 'aria-label="Revoke ' not in devices.text  # nothing left to revoke

    runtime = DeviceLink.runtime_of(app)
    assert await runtime.keys.revocations.drain() == 0  # the issuer is not called back
    assert store.revocations == ["hk1"]
    events = await AdminService(runtime.store).audit(username="alice")
    assert events[-1].kind is AuditKind.REVOKED
    assert events[-1].detail == "revoked by the key issuer (the host application)"
    assert [event.kind for event in app.state.host_events] == [
        EventKind.APPROVED,
        EventKind.KEY_ISSUED,
        EventKind.KEY_REVOKED,
    ]
    # Told again, or of an id devicelink never issued: nothing to do.
    assert (await example.post("/host/keys/hk1/revoke")).json() == {"revoked": False}


async def test_key_revoked_by_host_needs_the_app_running(settings: Settings) -> None:
    component = DeviceLink(settings.model_copy(update={"public_url": f"{PUBLIC}/auth"}))
    with pytest.raises(RuntimeError, match="not running"):
        await component.key_revoked_by_host("hk1")


# --- helpers ---------------------------------------------------------------------------


async def refused(host: Host, key: str) -> bool:
    return (await host.me(key)).status_code == 401


async def told(keys: HostKeyStore, key_id: str) -> bool:
    return key_id in keys.revocations


async def key_owner_id(host: Host, key: str) -> int:
    async with host.runtime.store.transaction() as tx:
        found = await tx.api_keys.get_with_owner(host.runtime.hasher.api_key(key))
    assert found is not None
    return found[1].id
