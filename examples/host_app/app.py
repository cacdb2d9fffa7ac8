"""A small host application that mounts devicelink (see README, "Embedding").

The host already has users with a session of their own and its own API keys. It plugs
both into devicelink:

- ``HostKeyIssuer`` mints the key a device receives in the host's key store (here an
  in-memory dict standing in for a table), and revokes it there when the user revokes
  the device on devicelink's "Connected devices" page;
- ``current_host_user`` tells devicelink who is signed in to the host, so those users
  approve a device without signing in a second time.

Run it:  uvicorn --factory examples.host_app.app:create --port 9000
(the device side: ``devicelink login --server http://127.0.0.1:9000/auth``)
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fastapi import Depends, FastAPI, HTTPException, Request, Response

from devicelink.core.models import ApiKey, Client, DeviceAuthorization, Identity, IssuedKey, User
from devicelink.core.ports import Transaction
from devicelink.server import DeviceLink, Settings

HOST_SESSION_COOKIE = "host_session"


@dataclass
class HostKey:
    owner: str
    revoked: bool = False


@dataclass
class HostKeyStore:
    """The host's own API keys (a table in a real application)."""

    keys: dict[str, HostKey] = field(default_factory=dict)
    by_id: dict[str, str] = field(default_factory=dict)
    revocations: list[str] = field(default_factory=list)

    def mint(self, owner: str) -> tuple[str, str]:
        key_id = f"hk{len(self.keys) + 1}"
        secret = "host_" + secrets.token_urlsafe(24)
        self.keys[secret] = HostKey(owner)
        self.by_id[key_id] = secret
        return key_id, secret

    def revoke(self, key_id: str) -> None:
        self.keys[self.by_id[key_id]].revoked = True
        self.revocations.append(key_id)

    def owner_of(self, secret: str) -> str | None:
        key = self.keys.get(secret)
        return key.owner if key is not None and not key.revoked else None


class HostKeyIssuer:
    """devicelink's KeyIssuer plug point, backed by the host's key store."""

    def __init__(self, store: HostKeyStore) -> None:
        self.store = store

    async def issue(
        self,
        tx: Transaction,
        *,
        user: User,
        client: Client,
        authorization: DeviceAuthorization,
        now: datetime,
    ) -> IssuedKey:
        key_id, secret = self.store.mint(user.username)
        return IssuedKey(
            access_token=secret, expires_at=now + timedelta(days=90), external_id=key_id
        )

    async def revoke(self, tx: Transaction, *, key: ApiKey, now: datetime) -> None:
        if key.external_id is not None:
            self.store.revoke(key.external_id)


def host_user(request: Request) -> str | None:
    """The host's own sign-in (a plain cookie here; a real session in a real app)."""
    return request.cookies.get(HOST_SESSION_COOKIE)


async def current_host_user(request: Request) -> Identity | None:
    name = host_user(request)
    if name is None:
        return None
    return Identity(provider="host", subject=name, username=name)


def build_app(settings: Settings) -> FastAPI:
    key_store = HostKeyStore()
    devicelink = DeviceLink(
        settings, key_issuer=HostKeyIssuer(key_store), resolve_user=current_host_user
    )
    app = FastAPI(lifespan=devicelink.lifespan)
    app.state.host_keys = key_store
    app.include_router(devicelink.router, prefix=devicelink.prefix)

    @app.post("/host/login")
    async def login(username: str, response: Response) -> dict[str, str]:
        response.set_cookie(HOST_SESSION_COOKIE, username, httponly=True, samesite="lax")
        return {"signed_in": username}

    def api_key_owner(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        owner = key_store.owner_of(token.strip()) if scheme.lower() == "bearer" else None
        if owner is None:
            raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
        return owner

    @app.get("/host/whoami")
    async def whoami(owner: str = Depends(api_key_owner)) -> dict[str, str]:
        return {"user": owner}

    return app


def create() -> FastAPI:
    """For ``uvicorn --factory``: devicelink under /auth, settings from the environment."""
    port = os.environ.get("HOST_APP_PORT", "9000")
    public_url = os.environ.get("DEVICELINK_PUBLIC_URL", f"http://127.0.0.1:{port}/auth")
    return build_app(Settings(public_url=public_url))
