"""The ``devicelink`` console script (``[project.scripts]`` in pyproject.toml).

Scripts call ``devicelink token`` before every request (``curl -H "Authorization: Bearer
$(devicelink token)"``), so it starts as little as it can: when all it has to do is print
a key, that is the environment's (``DEVICELINK_TOKEN``) or the stored key of the server, still
valid, with no key of that server waiting to be revoked, this module prints it with the
credential store alone: no Click, Rich or httpx, no keyring when the environment turns it
off (``devicelink.client.keyring_store``). Where the store's answer came from files alone,
it is kept (``devicelink.client.token_cache``), and the next identical call prints it
without even the store, while those files and the environment are unchanged.

Every other command line, and ``token`` when it has more to say (not logged in, an expired
key, a key to revoke first, an unreadable store, a bad URL), goes to the Click group of
``devicelink.cli``, which does and says everything as it always has, from the start: what
happens here only reads.
"""

from __future__ import annotations

import os
import sys
import time

from devicelink.client import token_cache

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Sequence


SERVICE = "devicelink"
"""The keyring service and config directory of devicelink's own commands (the store's
default; tests/client_cli/test_quick_token.py checks it is what ``token`` is mounted with)."""


def main() -> None:
    args = sys.argv[1:]
    key = cached_token(args)
    if key is None:
        key = quick_token(args)
    if key is None:
        from devicelink.cli import main as devicelink

        devicelink()
        return
    try:
        sys.stdout.write(key + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # As Click ends a command whose reader went away: exit 1, and no second error
        # when the interpreter flushes standard output on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def cached_token(args: Sequence[str], now: float | None = None) -> str | None:
    """The key :func:`quick_token` printed last for these arguments, while nothing it was
    computed from has changed and it is valid at ``now`` (the clock's, by default); None
    otherwise (see ``devicelink.client.token_cache``)."""
    plain, server = _plain_token(args)
    if not plain or _completing():
        return None
    config_dir = token_cache.config_dir_hint(SERVICE)
    if config_dir is None:
        return None
    return token_cache.lookup(config_dir, server, time.time() if now is None else now)


def quick_token(args: Sequence[str]) -> str | None:
    """The key ``devicelink token`` prints for these arguments, when printing it is all
    the command would do; None when the Click command must run (it then does the same
    reads again, and everything else).

    The decision is ``token``'s (``devicelink.client.commands.status.current_key``) in its
    plain case: the store's marked keys, then :meth:`CredentialStore.resolve` (the
    environment's key first), then expiry. tests/client_cli/test_quick_token.py runs the
    command beside it on each case it answers, and checks those it leaves.
    """
    plain, server = _plain_token(args)
    if not plain or _completing():
        return None  # not `token [--server URL]`, or Click's shell completion at work
    from devicelink.client.keyring_store import turned_off
    from devicelink.client.servers import resolve_server
    from devicelink.client.store import CredentialStore

    # The defaults of the store and of resolve_server are devicelink's own settings (the
    # keyring service, DEVICELINK_TOKEN, DEVICELINK_SERVER), those devicelink.cli mounts
    # the commands with; token shows no keyring warning.
    store = CredentialStore(service=SERVICE, warn=None)
    config_dir = str(store.config_dir)
    platformdirs = sys.modules["platformdirs"].__file__  # where the store found its directory
    files = token_cache.watched_files(config_dir, *([platformdirs] if platformdirs else []))
    try:
        target = resolve_server(server, store=store)
        if store.pending_revocation(target):
            return None  # to be revoked first, and maybe reported: the command does it
        credential = store.resolve(target)
        # The keyring never asked (the environment turned it off), the key not the
        # environment's: files alone decided.
        from_files = turned_off() and store.from_environment(target) is None
    except Exception:  # a bad URL, an unreadable or insecure file: the command meets it
        return None  # again, and says so as it always has
    if credential is None or credential.is_expired():
        return None
    if from_files and config_dir == token_cache.config_dir_hint(SERVICE):
        expires = credential.expires_at
        token_cache.save(
            config_dir,
            server=target,
            key=credential.access_token,
            expires=None if expires is None else expires.timestamp(),
            for_default=server is None,
            files=files,
        )
    return credential.access_token


def _completing() -> bool:
    """Whether Click's shell completion is at work (its ``_PROG_COMPLETE`` variable)."""
    return any(n[:1] == "_" and n.endswith("_COMPLETE") for n in os.environ)


def _plain_token(args: Sequence[str]) -> tuple[bool, str | None]:
    """Whether ``args`` is ``token``, ``token --server URL`` or ``token --server=URL``,
    and ``--server``'s value. Any other command line (help, another verb, a value that
    looks like an option, anything Click might parse otherwise or refuse) is not."""
    match list(args):
        case ["token"]:
            return True, None
        case ["token", "--server", value] if not value.startswith("-"):
            return True, value
        case ["token", option] if option.startswith("--server="):
            return True, option.removeprefix("--server=")
        case _:
            return False, None


__all__ = ["SERVICE", "cached_token", "main", "quick_token"]
