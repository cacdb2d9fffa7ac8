"""Which server a command talks to: ``--server``, the environment, the server last logged
in to, or the default.

Apart from ``api`` (which re-exports these names) so that ``devicelink token`` finds its
server without importing httpx (``devicelink.launcher``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from devicelink.client.urls import normalise_server

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from devicelink.client.store import CredentialStore

DEFAULT_SERVER = "http://127.0.0.1:8000"
"""The server of ``devicelink serve`` on its embedded default."""

DEFAULT_SERVER_ENV = "DEVICELINK_SERVER"
"""The environment variable that names the server when ``--server`` is not given."""


def resolve_server(
    explicit: str | None,
    *,
    store: CredentialStore | None = None,
    env_var: str = DEFAULT_SERVER_ENV,
    default: str = DEFAULT_SERVER,
    env: Mapping[str, str] | None = None,
) -> str:
    """The server a command talks to, normalised: ``explicit`` (``--server``), else the
    ``env_var`` variable, else the server last logged in to (``store``), else ``default``.

    Raises :class:`~devicelink.client.errors.BadServerURL` (a ``ValueError``) for a URL
    that is not one.
    """
    env = os.environ if env is None else env
    from_env = env.get(env_var, "").strip()
    if explicit is not None and explicit.strip():
        return normalise_server(explicit)
    if from_env:
        return normalise_server(from_env)
    remembered = store.default_server() if store is not None else None
    return normalise_server(remembered or default)


__all__ = ["DEFAULT_SERVER", "DEFAULT_SERVER_ENV", "resolve_server"]
