"""The CLI side of the device flow. Needs only httpx and the CLI extras; never imports
server code, so ``pip install devicelink`` gives a CLI author the client alone.

- ``flow``: the sans-IO device flow (RFC 8628), discovery (RFC 8414), revocation
  (RFC 7009) and the key check, as generators that yield commands;
- ``http``: drivers that run those generators on httpx, sync and async, and
  :class:`DeviceFlowClient` / :class:`AsyncDeviceFlowClient`;
- ``errors``: the typed failures, each with a message for the user;
- ``credentials``: the key per server, in the OS keyring or a private file;
- ``api``: :func:`login`, :func:`whoami`, :func:`logout` for programs;
- ``commands``: the ``login / status / token / logout`` commands, and
  :func:`make_auth_group` for a host CLI to mount them as its own.
"""

from devicelink.client.api import (
    DEFAULT_SERVER,
    LogoutResult,
    browser_plausible,
    credential_from_token,
    login,
    logout,
    whoami,
)
from devicelink.client.commands import AuthConfig, ClientHooks, ExitCode, make_auth_group
from devicelink.client.credentials import (
    Credential,
    CredentialStore,
    CredentialStoreError,
    InsecureCredentialsFileError,
)
from devicelink.client.errors import (
    AccessDenied,
    DeviceFlowError,
    DiscoveryFailed,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    InvalidToken,
    ServerRejected,
    ServerUnreachable,
)
from devicelink.client.flow import (
    CodeIssued,
    ConnectionLost,
    DeviceAuthorization,
    Endpoints,
    Send,
    Sleep,
    Token,
    device_flow,
    discover,
    revoke_flow,
    whoami_flow,
)
from devicelink.client.http import (
    USER_AGENT,
    AsyncDeviceFlowClient,
    DeviceFlowClient,
    arun_device_flow,
    run_device_flow,
)

__all__ = [
    "DEFAULT_SERVER",
    "USER_AGENT",
    "AccessDenied",
    "AsyncDeviceFlowClient",
    "AuthConfig",
    "ClientHooks",
    "CodeIssued",
    "ConnectionLost",
    "Credential",
    "CredentialStore",
    "CredentialStoreError",
    "DeviceAuthorization",
    "DeviceFlowClient",
    "DeviceFlowError",
    "DiscoveryFailed",
    "Endpoints",
    "ExitCode",
    "ExpiredToken",
    "InsecureCredentialsFileError",
    "InvalidClient",
    "InvalidGrant",
    "InvalidToken",
    "LogoutResult",
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
    "revoke_flow",
    "run_device_flow",
    "whoami",
    "whoami_flow",
]
