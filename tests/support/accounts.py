"""Accounts, browser sessions and approvals for a running server, made without its pages:
with the operator's command, or straight in its database through devicelink's own
services (for tests whose subject is something else, in a fraction of the time)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from devicelink.core.codes import CodeHasher
from devicelink.core.models import Identity
from devicelink.idp.local import hash_password
from devicelink.service import DeviceFlowService, StoredKeyIssuer
from devicelink.service.clock import utc_now
from devicelink.service.sessions import BrowserSessions
from devicelink.storage import SqlStore, create_engine_for_url
from tests.support.http import PASSWORD
from tests.support.processes import run_devicelink

SESSION_COOKIE = "devicelink_session"
SESSION_LIFETIME = 43200


def add_user(env: Mapping[str, str], cwd: Path, name: str, password: str = PASSWORD) -> None:
    """``devicelink users add NAME --password-stdin``, as an operator adds an account."""
    result = run_devicelink(
        "users", "add", name, "--password-stdin", env=env, cwd=cwd, stdin=password + "\n"
    )
    assert result.returncode == 0, result.stderr


def add_users(database_url: str, names: list[str], password: str = PASSWORD) -> None:
    """Local accounts written directly: much faster than one ``devicelink users add``
    process each."""
    password_hash = hash_password(password)

    async def add() -> None:
        store = SqlStore(create_engine_for_url(database_url))
        try:
            async with store.transaction() as tx:
                for name in names:
                    await tx.users.add(name, password_hash, utc_now())
        finally:
            await store.dispose()

    asyncio.run(add())


def open_sessions(database_url: str, secret: str, usernames: list[str]) -> list[str]:
    """Signed-in browser sessions of ``usernames`` (one each, in order): their cookie
    tokens. Made by devicelink's session service with the server's secret, as a sign-in
    makes them, without the argon2 verification each sign-in costs."""

    async def open_all() -> list[str]:
        store = SqlStore(create_engine_for_url(database_url))
        try:
            async with store.transaction() as tx:
                users = [await tx.users.get_by_username(name) for name in usernames]
            sessions = BrowserSessions(
                store, CodeHasher(secret.encode()), lifetime=SESSION_LIFETIME
            )
            tokens = []
            for user in users:
                assert user is not None
                identity = Identity(
                    provider="local", subject=str(user.id), username=user.username, user_id=user.id
                )
                tokens.append((await sessions.sign_in(None, identity)).token)
            return tokens
        finally:
            await store.dispose()

    return asyncio.run(open_all())


async def approve_through_service(
    database_url: str, secret: bytes, user_code: str, username: str = "alice"
) -> int:
    """Approve ``user_code`` as ``username`` (created when missing) through the service
    layer, against the server's own database; the user's id."""
    store = SqlStore(create_engine_for_url(database_url))
    try:
        flows = DeviceFlowService(store, CodeHasher(secret), StoredKeyIssuer())
        async with store.transaction() as tx:
            user = await tx.users.get_by_username(username)
            if user is None:
                user = await tx.users.add(username, None, utc_now())
        verdict = await flows.approve(user_code, user_id=user.id)
        assert verdict == "ok", f"approving {user_code} gave {verdict!r}"
        return user.id
    finally:
        await store.dispose()
