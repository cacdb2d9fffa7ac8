"""A small host application that mounts devicelink (see README, "Embedding").

The host already has users with a session of their own and its own API keys. It plugs
both into devicelink:

- ``HostKeyIssuer`` mints the key a device receives in the host's key store (here an
  in-memory dict standing in for a table), declares the keys' shape (``host_...``), and
  revokes it there whenever devicelink revokes the device (the "Connected devices"
  page, the CLI's logout, the operator's ``keys revoke`` and ``users disable``); a key
  the host revokes itself is reported with ``DeviceLink.key_revoked_by_host``;
- ``current_host_user`` tells devicelink who is signed in to the host, so those users
  approve a device without signing in a second time (by the host's user id: two of its
  users may share a name);
- ``login_url`` sends a visitor who is signed in nowhere to the host's sign-in page,
  which sends them back (``next``, checked to be a path of devicelink's), and
  ``logout_url`` puts the host's sign-out behind devicelink's "Sign out".

Run it:  uvicorn --factory examples.host_app.app:create --port 9000 --no-access-log
(uvicorn's own access log would print query strings, which carry user codes)
(the device side: ``devicelink login --server http://127.0.0.1:9000/auth``)
"""

from __future__ import annotations

import html
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from devicelink.core.events import DeviceLinkEvent
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

    def revoke(self, key_id: str) -> bool:
        """Revoke the key; False when it already was (devicelink may call twice)."""
        key = self.keys[self.by_id[key_id]]
        if key.revoked:
            return False
        key.revoked = True
        self.revocations.append(key_id)
        return True

    def owner_of(self, secret: str) -> str | None:
        key = self.keys.get(secret)
        return key.owner if key is not None and not key.revoked else None


class HostKeyIssuer:
    """devicelink's KeyIssuer plug point, backed by the host's key store."""

    key_prefix = "host_"
    """The shape of the host's keys: devicelink looks up no other (besides its own
    ``dlk_`` keys), so garbage costs no database query."""

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
        key_id, secret = self.store.mint(user.subject or user.username)  # the host's id
        return IssuedKey(
            access_token=secret, expires_at=now + timedelta(days=90), external_id=key_id
        )

    async def revoke(self, tx: Transaction, *, key: ApiKey, now: datetime) -> None:
        if key.external_id is not None:
            self.store.revoke(key.external_id)


def host_user(request: Request) -> str | None:
    """The host's own sign-in: the signed-in user's id (a plain cookie here; a real
    session in a real app)."""
    return request.cookies.get(HOST_SESSION_COOKIE)


async def current_host_user(request: Request) -> Identity | None:
    """devicelink's resolve_user: the host's user id is the subject (unique, stable);
    the name is only shown, and two users may share one."""
    user_id = host_user(request)
    names: dict[str, str] = request.app.state.host_users
    if user_id is None or user_id not in names:
        return None
    return Identity(provider="host", subject=user_id, username=names[user_id])


def back_to_devicelink(target: str | None, prefix: str) -> str | None:
    """Where the host's sign-in sends the user back: only a path of devicelink's."""
    if not target or not target.startswith(prefix + "/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(ch) < 0x21 for ch in target):
        return None
    return target


SIGN_IN_PAGE = """<!doctype html><title>Sign in to Acme</title>
<form method="post" action="/host/login">
  <label>Username <input name="username" required></label>
  <input type="hidden" name="next" value="{next}">
  <button type="submit">Sign in</button>
</form>"""


def build_app(settings: Settings) -> FastAPI:
    key_store = HostKeyStore()
    events: list[DeviceLinkEvent] = []  # the host's own event bus or webhooks, in a real app
    devicelink = DeviceLink(
        settings,
        key_issuer=HostKeyIssuer(key_store),
        resolve_user=current_host_user,
        on_event=events.append,  # approved, key issued, key revoked: after each commit
    )
    app = FastAPI(lifespan=devicelink.lifespan)
    app.state.host_keys = key_store
    app.state.host_events = events
    app.state.host_users = {}  # the host's users: id -> name (a table in a real app)
    app.include_router(devicelink.router, prefix=devicelink.prefix)

    @app.get("/host/login")
    async def login_page(next: str = "") -> HTMLResponse:
        """The host's sign-in page: DEVICELINK_LOGIN_URL sends devicelink's visitors here."""
        return HTMLResponse(SIGN_IN_PAGE.format(next=html.escape(next, quote=True)))

    @app.post("/host/login")
    async def login(request: Request) -> Response:
        """Sign in (no password: an example); ``user_id`` defaults to the name. With a
        ``next`` of devicelink's, back there."""
        fields = {**request.query_params, **(await request.form())}
        username = str(fields["username"])
        user_id = str(fields.get("user_id") or username)
        app.state.host_users[user_id] = username
        target = back_to_devicelink(str(fields.get("next", "")), devicelink.prefix)
        response: Response = (
            RedirectResponse(target, status_code=303)
            if target
            else JSONResponse({"signed_in": username})
        )
        response.set_cookie(HOST_SESSION_COOKIE, user_id, httponly=True, samesite="lax")
        return response

    @app.get("/host/logout")
    async def logout() -> Response:
        """The host's sign-out (DEVICELINK_LOGOUT_URL): devicelink's pages link here."""
        response = HTMLResponse("<!doctype html><title>Signed out</title><p>Signed out.</p>")
        response.delete_cookie(HOST_SESSION_COOKIE)
        return response

    def api_key_owner(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        owner = key_store.owner_of(token.strip()) if scheme.lower() == "bearer" else None
        if owner is None:
            raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
        return owner

    @app.get("/host/whoami")
    async def whoami(owner: str = Depends(api_key_owner)) -> dict[str, str]:
        return {"user": owner}

    @app.post("/host/keys/{key_id}/revoke")
    async def revoke_key(key_id: str, request: Request) -> dict[str, object]:
        """The host revokes one of its keys itself (its own settings page, say), and
        tells devicelink, which stops accepting it and lists the device as revoked
        (without calling the issuer back)."""
        secret = key_store.by_id.get(key_id)
        if secret is None or key_store.keys[secret].owner != host_user(request):
            raise HTTPException(404, "no such key")
        revoked = key_store.revoke(key_id)
        await devicelink.key_revoked_by_host(key_id)
        return {"revoked": revoked}

    return app


def create() -> FastAPI:
    """For ``uvicorn --factory``: devicelink under /auth, settings from the environment."""
    port = os.environ.get("HOST_APP_PORT", "9000")
    public_url = os.environ.get("DEVICELINK_PUBLIC_URL", f"http://127.0.0.1:{port}/auth")
    # The host's sign-in and sign-out are the only ones: no local accounts in devicelink.
    return build_app(
        Settings(
            public_url=public_url,
            local_accounts=False,
            login_url="/host/login",
            logout_url="/host/logout",
        )
    )
