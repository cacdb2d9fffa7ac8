"""The client library for a program that signs its user in: log in, check, revoke.

Three calls cover what a command-line tool needs; each takes the server URL and a
:class:`~devicelink.client.store.CredentialStore` (one per process)::

    from devicelink.client import CredentialStore, login, logout, whoami

    store = CredentialStore(service="mycli", token_env="MYCLI_TOKEN")
    credential = login("https://login.example.com", client_id="mycli", store=store)
    print(credential.username, credential.expires_at)
    whoami("https://login.example.com", store=store)   # the owner, from /api/me
    logout("https://login.example.com", store=store)   # RFC 7009, then forget locally

A key that :func:`logout` cannot revoke (the server unreachable, failing or refusing) is
kept, marked to be revoked, and never used again; :func:`revoke_pending` (which
:func:`login` and the next :func:`logout` call) revokes it when the server answers, then
forgets it (``devicelink.client.revocation``).

:func:`login` signs in with :class:`DeviceFlowClient`. Where a browser can open on this
machine (:func:`browser_plausible`) and the server offers it, it runs the loopback flow
(authorization code + PKCE, redirected to a listener on 127.0.0.1:
``devicelink.client.loopback``); otherwise the device flow (RFC 8628), which shows the
code and the link through ``on_code`` (on standard error by default) and opens a browser
where one is plausible. :func:`choose_method` decides. Then it asks ``/api/me`` who
signed in, and stores the key. An async program runs :class:`AsyncDeviceFlowClient`
itself (the device flow) and turns the :class:`~devicelink.client.flow.Token` into a
credential with :func:`credential_from_token`.

The ``login`` / ``status`` / ``token`` / ``logout`` commands (``devicelink.client.commands``)
are built on these functions. Nothing here prints, except the default ``on_code`` and
``on_link``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import httpx

from devicelink.client.browser import (
    BrowserOpener,
    browser_plausible,
    open_in_browser,
    show_link_on_stderr,
)
from devicelink.client.credentials import DEFAULT_TOKEN_ENV, Credential
from devicelink.client.discovery import no_code_grant
from devicelink.client.errors import DeviceFlowError, KeyRefused, LoopbackRefused
from devicelink.client.http import (
    DEFAULT_CLIENT_ID,
    DEFAULT_TIMEOUT,
    DeviceFlowClient,
    OnCode,
    OnWait,
    show_code_on_stderr,
)
from devicelink.client.messages import DeviceAuthorization, Endpoints, Token
from devicelink.client.revocation import (
    ClientFor,
    LogoutResult,
    Revocation,
    log_out,
    revoke_keys,
    revoke_pending_keys,
)
from devicelink.client.servers import DEFAULT_SERVER, DEFAULT_SERVER_ENV, resolve_server
from devicelink.client.store import CredentialStore
from devicelink.core.names import terminal_safe

if TYPE_CHECKING:
    from devicelink.client.loopback_request import AuthorizationRequest

OnLink = Callable[["AuthorizationRequest", float], None]
"""Shows the loopback flow's authorization URL before the browser opens it, and how many
seconds the sign-in may take."""
OnMethod = Callable[[Literal["loopback", "device"], "str | None"], None]
"""Hears the flow a login runs, before it runs, and why not the loopback flow when
``"auto"`` chose it but the server refused it for this client."""

LoginMethod = Literal["auto", "loopback", "device"]
"""How :func:`login` signs in: ``"loopback"`` (authorization code + PKCE, the browser on
this machine redirecting to a listener on 127.0.0.1), ``"device"`` (RFC 8628: a code and a
link, for any device), or ``"auto"`` (:func:`choose_method`)."""
LOGIN_METHODS: tuple[LoginMethod, ...] = ("auto", "loopback", "device")

# --- which flow --------------------------------------------------------------------------


def choose_method(
    method: LoginMethod, endpoints: Endpoints, *, browser_here: bool
) -> Literal["loopback", "device"]:
    """The flow a login runs.

    ``"auto"`` picks the loopback flow when a browser can open on this machine
    (``browser_here``, usually :func:`browser_plausible`) and the server offers it (its
    metadata: ``authorization_endpoint`` with PKCE ``S256``), and the device flow
    otherwise: the device flow works from anywhere, but anyone can start one and send
    its code to a victim (phishing), which a redirect to this machine rules out.
    ``"loopback"`` on a server that does not offer it is :class:`DiscoveryFailed`.
    """
    if method not in LOGIN_METHODS:
        raise ValueError(f"method must be one of {', '.join(LOGIN_METHODS)}, not {method!r}")
    if method == "device":
        return "device"
    if endpoints.code_grant is None:
        if method == "loopback":
            raise no_code_grant(endpoints.issuer)
        return "device"
    return "loopback" if method == "loopback" or browser_here else "device"


# --- servers and credentials -------------------------------------------------------------


def owner_name(owner: Mapping[str, Any]) -> str | None:
    """The user named by an ``/api/me`` answer (``username``, else ``sub``), with what a
    terminal would obey shown escaped (:func:`devicelink.core.names.terminal_safe`)."""
    for field_name in ("username", "sub"):
        value = owner.get(field_name)
        if isinstance(value, str) and value:
            return terminal_safe(value[:200])
    return None


def owner_key_expiry(owner: Mapping[str, Any]) -> datetime | None:
    """``key.expires_at`` of an ``/api/me`` answer, if it carries a valid one."""
    key = owner.get("key")
    value = key.get("expires_at") if isinstance(key, Mapping) else None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def credential_from_token(
    token: Token,
    *,
    client_id: str | None,
    owner: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    issued_at: float | None = None,
) -> Credential:
    """The :class:`Credential` to store for a token the device flow returned.

    ``expires_at`` is the server's ``key.expires_at`` from ``owner`` (an ``/api/me``
    answer) when known, else counted from ``expires_in`` (from ``issued_at``, the
    ``time.time()`` when the token arrived, or ``now``).
    """
    now = now or datetime.now(UTC)
    expires_at = owner_key_expiry(owner) if owner else None
    if expires_at is None and token.expires_in is not None:
        start = datetime.fromtimestamp(issued_at, UTC) if issued_at is not None else now
        expires_at = start + timedelta(seconds=token.expires_in)
    return Credential(
        server=token.server,
        access_token=token.access_token,
        client_id=client_id or "",
        scope=token.scope,
        expires_at=expires_at,
        created_at=now,
        username=owner_name(owner) if owner else None,
    )


def scope_covers(granted: str | None, requested: str | Iterable[str] | None) -> bool:
    """Whether a key granted ``granted`` serves a request for ``requested`` (``None``:
    whatever the server grants by default)."""
    if requested is None:
        return True
    wanted = set(requested.split() if isinstance(requested, str) else requested)
    return wanted <= set((granted or "").split())


# --- the three operations ----------------------------------------------------------------


def sign_in(
    client: DeviceFlowClient,
    *,
    on_code: OnCode | None = None,
    on_wait: OnWait | None = None,
    open_browser: bool | None = None,
    browser: BrowserOpener | None = None,
    clock: Callable[[], datetime] | None = None,
    method: LoginMethod = "auto",
    on_link: OnLink | None = None,
    on_method: OnMethod | None = None,
) -> Credential:
    """Sign in on ``client`` and return the credential, without storing it.

    ``method`` (:func:`choose_method`) picks the flow; ``open_browser`` (``None``:
    :func:`browser_plausible`) says whether ``browser`` (default :func:`open_in_browser`)
    opens the link. ``on_method(flow, why)`` hears which flow runs, before it does.
    When ``"auto"`` picked the loopback flow but the server does not accept it for this
    client (:class:`~devicelink.client.errors.LoopbackRefused`, found before anything
    is shown), the device flow runs instead, and ``why`` says so.

    - The device flow: ``on_code`` shows the code and the link (first), then the browser
      opens ``verification_uri_complete``.
    - The loopback flow (``devicelink.client.loopback``): ``on_link(request, lifetime)``
      shows the authorization URL (default: on standard error), then the browser opens
      it; the redirect to 127.0.0.1 brings the code, redeemed for the key.

    ``on_wait(seconds, remaining)`` is called before each wait of either. The owner's
    name and the key's expiry come from ``/api/me`` when the server answers it. ``clock``
    (default: the wall clock, in UTC) dates the key's arrival.
    """
    should_open = browser_plausible() if open_browser is None else open_browser
    opener = browser or open_in_browser
    chosen = choose_method(method, client.discover(), browser_here=should_open)

    def code_issued(authorization: DeviceAuthorization) -> None:
        (on_code or show_code_on_stderr)(authorization)
        if should_open:
            opener(authorization.verification_uri_complete or authorization.verification_uri)

    heard = on_method or _ignore_method
    token: Token | None = None
    if chosen == "loopback":
        from devicelink.client.loopback import loopback_sign_in  # http.server: only here

        heard("loopback", None)
        try:
            token = loopback_sign_in(
                client,
                open_link=opener if should_open else None,
                on_link=on_link or show_link_on_stderr,
                on_wait=on_wait,
            )
        except LoopbackRefused as refused:
            if method != "auto":
                raise
            heard("device", str(refused))
    else:
        heard("device", None)
    if token is None:
        token = client.login(on_code=code_issued, on_wait=on_wait)
    arrived = clock() if clock is not None else datetime.now(UTC)
    owner: dict[str, Any] | None
    try:
        owner = client.whoami(token)
    except DeviceFlowError:
        owner = None  # a server without /api/me: the key is good, its owner unknown
    return credential_from_token(token, client_id=client.client_id, owner=owner, now=arrived)


def _ignore_method(method: Literal["loopback", "device"], why: str | None) -> None:
    pass


def login(
    server: str | None = None,
    *,
    client_id: str | None = DEFAULT_CLIENT_ID,
    scope: str | Iterable[str] | None = None,
    store: CredentialStore | None = None,
    method: LoginMethod = "auto",
    open_browser: bool | None = None,
    on_code: OnCode | None = None,
    on_link: OnLink | None = None,
    on_wait: OnWait | None = None,
    browser: BrowserOpener | None = None,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    user_agent: str | None = None,
) -> Credential:
    """Sign in to ``server`` through the browser and store the key; returns the credential.

    - ``server``: the server URL (default: ``$DEVICELINK_SERVER``, the server last logged
      in to, then :data:`DEFAULT_SERVER`);
    - ``client_id``, ``scope``: what the sign-in asks for;
    - ``store``: where the key goes (default: ``CredentialStore()``, devicelink's own);
    - ``method``: ``"auto"`` (the loopback flow when a browser can open here and the
      server offers it, else the device flow: :func:`choose_method`), ``"loopback"`` or
      ``"device"``;
    - ``open_browser``: ``True``/``False``, or ``None`` to open one where plausible
      (:func:`browser_plausible`); ``browser(url)`` opens it (default
      :func:`open_in_browser`); ``False`` also means ``"auto"`` picks the device flow;
    - ``on_code(authorization)``: shows ``user_code`` and ``verification_uri`` (default:
      one line on standard error); ``on_link(request, lifetime)``: shows the loopback
      flow's link (default: one line on standard error); ``on_wait(seconds, remaining)``:
      before each wait;
    - ``timeout``, ``transport``, ``sleep``: passed to :class:`DeviceFlowClient` (tests give
      an ``httpx.MockTransport`` and a ``sleep`` that does not wait); ``user_agent``: the
      host CLI's product token, sent before devicelink's in the User-Agent.

    Keys that an earlier logout could not revoke are revoked first (:func:`revoke_pending`);
    one that still cannot be stays marked to be revoked, beside the new key. The stored key
    the new one replaces is revoked too (or, when it cannot be yet, marked to be revoked).

    Raises the :class:`~devicelink.client.errors.DeviceFlowError` subclasses
    (``LoginDenied``, ``LoginExpired``, ``ServerUnreachable`` ...; ``LoginExpired`` too
    when no redirect came back to the loopback listener in time) and
    :class:`~devicelink.client.credentials.CredentialStoreError`.
    """
    store, target = _store_and_target(server, store)
    clients = _clients(target, client_id, timeout, transport, sleep, user_agent)
    revoke_pending_keys(store, target, client_for=clients, now=datetime.now(UTC))
    with DeviceFlowClient(
        target,
        client_id,
        scope=scope,
        timeout=timeout,
        transport=transport,
        sleep=sleep,
        user_agent=user_agent,
    ) as client:
        credential = sign_in(
            client,
            on_code=on_code,
            on_link=on_link,
            on_wait=on_wait,
            open_browser=open_browser,
            browser=browser,
            method=method,
        )
    # The key it replaces is revoked, not left working (issue 16); one that cannot be yet
    # stays marked to be revoked, and the next command that reaches the server revokes it.
    _, replaced = store.replace(credential, since=datetime.now(UTC))
    if replaced is not None:
        revoke_keys(store, [replaced], client_for=clients, now=datetime.now(UTC))
    return credential


def whoami(
    server: str | None = None,
    *,
    store: CredentialStore | None = None,
    token: str | None = None,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    user_agent: str | None = None,
) -> dict[str, Any]:
    """The owner of the key for ``server`` according to its ``/api/me``.

    The key is ``token`` if given, else the store's (``DEVICELINK_TOKEN``, or the
    store's ``token_env``, overrides the stored one). Raises :class:`KeyRefused` when
    there is no key or the server refuses it.
    """
    store, target = _store_and_target(server, store)
    if token is None:
        credential = store.resolve(target)
        if credential is None:
            raise KeyRefused(f"not logged in to {target}")
        token = credential.access_token
    with DeviceFlowClient(
        target, None, timeout=timeout, transport=transport, sleep=sleep, user_agent=user_agent
    ) as client:
        return client.whoami(token)


def logout(
    server: str | None = None,
    *,
    store: CredentialStore | None = None,
    client_id: str | None = DEFAULT_CLIENT_ID,
    force: bool = False,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> LogoutResult:
    """Revoke the stored key on the server (RFC 7009), then forget it locally.

    DESIGN.md defect 10: deleting the local copy alone leaves a working key behind. When
    the server cannot be reached, fails or refuses, the key is kept, marked to be revoked
    (``revoked=False``, ``removed=False``, ``pending``, ``error``): it is not used again, and
    the next :func:`logout`, :func:`revoke_pending` or :func:`login` revokes it. With
    ``force`` it is forgotten anyway (``removed=True``) after one try. Keys marked by an
    earlier logout are revoked too. The key in ``DEVICELINK_TOKEN`` is not touched.
    """
    store, target = _store_and_target(server, store)
    client_for = _clients(target, client_id, timeout, transport, sleep, user_agent)
    return log_out(store, target, client_for=client_for, now=now or datetime.now(UTC), force=force)


def revoke_pending(
    server: str | None = None,
    *,
    store: CredentialStore | None = None,
    client_id: str | None = DEFAULT_CLIENT_ID,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> list[Revocation]:
    """Revoke the keys of ``server`` that a logout could not revoke, and forget each one
    that is gone; what became of each (empty, and nothing sent, when none is marked).

    A program calls it before it uses the server, as the commands do; it does not raise
    for a revocation that fails (the key stays marked; :attr:`Revocation.error` says why).
    """
    store, target = _store_and_target(server, store)
    client_for = _clients(target, client_id, timeout, transport, sleep, user_agent)
    return revoke_pending_keys(store, target, client_for=client_for, now=now or datetime.now(UTC))


def _clients(
    target: str,
    client_id: str | None,
    timeout: float | httpx.Timeout,
    transport: httpx.BaseTransport | None,
    sleep: Callable[[float], None],
    user_agent: str | None,
) -> ClientFor:
    """A client of ``target`` for a key's own client id (else ``client_id``)."""

    def client_for(key_client_id: str | None) -> DeviceFlowClient:
        return DeviceFlowClient(
            target,
            key_client_id or client_id,
            timeout=timeout,
            transport=transport,
            sleep=sleep,
            user_agent=user_agent,
        )

    return client_for


def _store_and_target(
    server: str | None, store: CredentialStore | None
) -> tuple[CredentialStore, str]:
    """The store (devicelink's own by default) and the server it resolves ``server`` to."""
    store = store if store is not None else CredentialStore()
    return store, resolve_server(server, store=store)


__all__ = [
    "DEFAULT_SERVER",
    "DEFAULT_SERVER_ENV",
    "DEFAULT_TOKEN_ENV",
    "LOGIN_METHODS",
    "BrowserOpener",
    "LoginMethod",
    "LogoutResult",
    "OnLink",
    "OnMethod",
    "Revocation",
    "browser_plausible",
    "choose_method",
    "credential_from_token",
    "login",
    "logout",
    "open_in_browser",
    "owner_key_expiry",
    "owner_name",
    "resolve_server",
    "revoke_pending",
    "scope_covers",
    "show_link_on_stderr",
    "sign_in",
    "whoami",
]
