"""The processes of tests/embedding/test_host_end_to_end.py: the example host app and a
resource server, each run by ``uvicorn --factory`` on loopback, and ``acme``, a host CLI
built with ``make_auth_group``, run as ``python -m tests.embedding.host_process``.

The servers are :class:`~tests.support.servers.ServerProcess` objects, waited for and
stopped (and their output attached to a failed test's report) as ``devicelink serve``'s
are.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from devicelink.client import make_auth_group

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tests.support.servers import ServerProcess

# The server's packages are imported where they are used: ``acme`` starts as fast as a
# CLI that has only the client installed.

REPO = Path(__file__).resolve().parents[2]
"""Where ``examples`` and ``tests`` are importable from (uvicorn's ``--app-dir``)."""
ACME_CLIENT_ID = "acme-cli"
ACME_USER_AGENT = "acme-cli/2.1"
RESOURCE_CACHE_SECONDS = 1.0
"""How long the resource server believes an answer of the introspection endpoint."""


def start_uvicorn(
    factory: str, *, port: int, env: Mapping[str, str], log_dir: Path, name: str, ready: str
) -> ServerProcess:
    """``uvicorn --factory FACTORY`` on 127.0.0.1:``port``, once ``ready`` answers 200;
    its output in ``log_dir/NAME.stdout`` and ``.stderr``. The caller stops it."""
    from tests.support.servers import RUNNING, ServerProcess, wait_until_answering

    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    # No uvicorn access log: it would write the user codes of the links users open
    # (``/auth/oauth/device/verify?user_code=...``, and the ``next`` of the host's
    # sign-in). ``devicelink serve`` turns it off for the same reason.
    command = [
        sys.executable, "-m", "uvicorn", "--factory", factory, "--app-dir", str(REPO),
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(
            command, env=dict(env), cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    server = ServerProcess(process, port, REPO, dict(env), stdout_path, stderr_path)
    RUNNING.append(server)
    wait_until_answering(server, ready)
    return server


def resource_server() -> FastAPI:
    """Another service of the host's (``uvicorn --factory``): its ``/things`` take the
    host's keys, checked by asking devicelink (RFC 7662) as the confidential client
    ``THINGS_CLIENT_ID`` / ``THINGS_CLIENT_SECRET`` at ``THINGS_ISSUER``."""
    from fastapi import Depends, FastAPI

    from devicelink.core.apikeys import KeyShape
    from devicelink.http.resource import IntrospectionVerifier, Principal, require_api_key

    verifier = IntrospectionVerifier(
        os.environ["THINGS_ISSUER"],
        os.environ["THINGS_CLIENT_ID"],
        os.environ["THINGS_CLIENT_SECRET"],
        key_shape=KeyShape(prefix="host_"),
    )
    app = FastAPI()
    api_key = require_api_key(verifier, cache_seconds=RESOURCE_CACHE_SECONDS)

    @app.get("/things")
    async def things(who: Principal = Depends(api_key)) -> dict[str, str]:
        return {"user": who.username, "client": who.client_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def acme() -> click.Group:
    """The host's CLI: devicelink's commands mounted as ``acme auth ...`` (the server
    from ``ACME_SERVER``, the key in keyring service ``acme`` or ``~/.config/acme``)."""

    @click.group()
    def main() -> None:
        """Acme's command-line tool."""

    main.add_command(
        make_auth_group(
            name="auth",
            server="http://127.0.0.1:9000/auth",
            client_id=ACME_CLIENT_ID,
            keyring_service="acme",
            env_prefix="ACME",
            user_agent=ACME_USER_AGENT,
        )
    )
    return main


if __name__ == "__main__":
    acme()(prog_name="acme")
