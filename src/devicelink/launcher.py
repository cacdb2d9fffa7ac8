"""The ``devicelink`` console script (``[project.scripts]`` in pyproject.toml).

Scripts call ``devicelink token`` before every request (``curl -H "Authorization: Bearer
$(devicelink token)"``), so it starts as little as it can: when all it has to do is print
a key, that is the environment's (``DEVICELINK_TOKEN``) or the stored key of the server, still
valid, with no key of that server waiting to be revoked, this module prints it with the
credential store alone: no Click, Rich or httpx, no keyring when the environment turns it
off (``devicelink.client.keyring_store``).

Every other command line, and ``token`` when it has more to say (not logged in, an expired
key, a key to revoke first, an unreadable store, a bad URL), goes to the Click group of
``devicelink.cli``, which does and says everything as it always has, from the start: what
happens here only reads.
"""

from __future__ import annotations

import os
import sys

from devicelink.client.servers import resolve_server
from devicelink.client.store import CredentialStore

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Sequence


def main() -> None:
    key = quick_token(sys.argv[1:])
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
    if not plain or any(n[:1] == "_" and n.endswith("_COMPLETE") for n in os.environ):
        return None  # not `token [--server URL]`, or Click's shell completion at work
    # The defaults of the store and of resolve_server are devicelink's own settings (the
    # keyring service, DEVICELINK_TOKEN, DEVICELINK_SERVER), those devicelink.cli mounts
    # the commands with; token shows no keyring warning.
    store = CredentialStore(warn=None)
    try:
        target = resolve_server(server, store=store)
        if store.pending_revocation(target):
            return None  # to be revoked first, and maybe reported: the command does it
        credential = store.resolve(target)
    except Exception:  # a bad URL, an unreadable or insecure file: the command meets it
        return None  # again, and says so as it always has
    if credential is None or credential.is_expired():
        return None
    return credential.access_token


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


__all__ = ["main", "quick_token"]
