"""The CLI side of the device flow. Needs only httpx and the CLI extras; never imports
server code, so ``pip install devicelink`` gives a CLI author the client alone.

- ``flow``: the sans-IO device flow (RFC 8628), revocation (RFC 7009) and the key
  check, as generators that yield the commands of ``messages``; ``discovery`` (RFC 8414),
  ``pacing`` (when to send), ``wire`` (what is sent and how answers are read) and
  ``urls`` (the canonical server URL) serve them;
- ``http``: drivers that run those generators on httpx, sync and async, and
  :class:`DeviceFlowClient` / :class:`AsyncDeviceFlowClient`;
- ``errors``: the typed failures, each with a message for the user;
- ``credentials``: a stored key; ``store``: the key per server, in the OS keyring
  (``keyring_store``) or a private file (``file_store``);
- ``revocation``: revoking stored keys, and keeping, marked to be revoked, a key that
  could not be revoked (never forgetting a key that still works);
- ``api``: :func:`login`, :func:`whoami`, :func:`logout`, :func:`revoke_pending` for
  programs;
- ``commands``: the ``login / status / token / logout`` commands, and
  :func:`make_auth_group` for a host CLI to mount them as its own.

Every name here is imported on first use (PEP 562): a program that needs the credential
store alone (``devicelink token``, see ``devicelink.launcher``) never loads httpx or Click.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from devicelink.client.api import (
        DEFAULT_SERVER,
        LogoutResult,
        Revocation,
        browser_plausible,
        credential_from_token,
        login,
        logout,
        revoke_pending,
        whoami,
    )
    from devicelink.client.commands import AuthConfig, ClientHooks, ExitCode, make_auth_group
    from devicelink.client.credentials import (
        Credential,
        CredentialStoreError,
        InsecureCredentialsFileError,
    )
    from devicelink.client.discovery import discover
    from devicelink.client.errors import (
        BadServerURL,
        ClientIdRefused,
        DeviceCodeRefused,
        DeviceFlowError,
        DiscoveryFailed,
        KeyRefused,
        LoginDenied,
        LoginExpired,
        LoginFailedOnServer,
        LoopbackRefused,
        ServerRejected,
        ServerUnreachable,
    )
    from devicelink.client.flow import device_flow, revoke_flow, whoami_flow
    from devicelink.client.http import (
        USER_AGENT,
        AsyncDeviceFlowClient,
        DeviceFlowClient,
        arun_device_flow,
        run_device_flow,
    )
    from devicelink.client.messages import (
        CodeIssued,
        ConnectionLost,
        DeviceAuthorization,
        Endpoints,
        Send,
        Sleep,
        Token,
    )
    from devicelink.client.store import CredentialStore
    from devicelink.client.urls import normalise_server

_EXPORTS: dict[str, tuple[str, ...]] = {
    "devicelink.client.api": (
        "DEFAULT_SERVER",
        "LogoutResult",
        "Revocation",
        "browser_plausible",
        "credential_from_token",
        "login",
        "logout",
        "revoke_pending",
        "whoami",
    ),
    "devicelink.client.commands": (
        "AuthConfig",
        "ClientHooks",
        "ExitCode",
        "make_auth_group",
    ),
    "devicelink.client.credentials": (
        "Credential",
        "CredentialStoreError",
        "InsecureCredentialsFileError",
    ),
    "devicelink.client.discovery": ("discover",),
    "devicelink.client.errors": (
        "BadServerURL",
        "ClientIdRefused",
        "DeviceCodeRefused",
        "DeviceFlowError",
        "DiscoveryFailed",
        "KeyRefused",
        "LoginDenied",
        "LoginExpired",
        "LoginFailedOnServer",
        "LoopbackRefused",
        "ServerRejected",
        "ServerUnreachable",
    ),
    "devicelink.client.flow": (
        "device_flow",
        "revoke_flow",
        "whoami_flow",
    ),
    "devicelink.client.http": (
        "USER_AGENT",
        "AsyncDeviceFlowClient",
        "DeviceFlowClient",
        "arun_device_flow",
        "run_device_flow",
    ),
    "devicelink.client.messages": (
        "CodeIssued",
        "ConnectionLost",
        "DeviceAuthorization",
        "Endpoints",
        "Send",
        "Sleep",
        "Token",
    ),
    "devicelink.client.store": ("CredentialStore",),
    "devicelink.client.urls": ("normalise_server",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})


__all__ = [
    "DEFAULT_SERVER",
    "USER_AGENT",
    "AsyncDeviceFlowClient",
    "AuthConfig",
    "BadServerURL",
    "ClientHooks",
    "ClientIdRefused",
    "CodeIssued",
    "ConnectionLost",
    "Credential",
    "CredentialStore",
    "CredentialStoreError",
    "DeviceAuthorization",
    "DeviceCodeRefused",
    "DeviceFlowClient",
    "DeviceFlowError",
    "DiscoveryFailed",
    "Endpoints",
    "ExitCode",
    "InsecureCredentialsFileError",
    "KeyRefused",
    "LoginDenied",
    "LoginExpired",
    "LoginFailedOnServer",
    "LogoutResult",
    "LoopbackRefused",
    "Revocation",
    "Send",
    "ServerRejected",
    "ServerUnreachable",
    "Sleep",
    "Token",
    "arun_device_flow",
    "browser_plausible",
    "credential_from_token",
    "device_flow",
    "discover",
    "login",
    "logout",
    "make_auth_group",
    "normalise_server",
    "revoke_flow",
    "revoke_pending",
    "run_device_flow",
    "whoami",
    "whoami_flow",
]
