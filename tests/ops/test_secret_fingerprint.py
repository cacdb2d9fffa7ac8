"""A process with another secret on the same database (issue 18, item 2): it used to
pass /readyz and answer ``invalid_grant`` to pending codes and 401 to valid keys,
logging nothing. The database keeps the fingerprint of its secret; ``serve`` and an
embedding application refuse another, saying so; ``devicelink secret adopt`` changes
it on purpose. Both databases, real processes for the operator's side.
"""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
import pytest
from pydantic import SecretStr
from sqlalchemy import make_url

from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.server.app import create_app
from tests.support.app import FakeClock, running
from tests.support.databases import Database
from tests.support.processes import clean_env, free_port, run_devicelink

pytestmark = pytest.mark.anyio

OTHER_SECRET = "another-deployments-secret-" + "k" * 30


def env_with(database: Database, secret: str) -> dict[str, str]:
    return clean_env(
        DEVICELINK_DATABASE_URL=database.url,
        DEVICELINK_SECRET_KEY=secret,
        DEVICELINK_PUBLIC_URL="http://127.0.0.1:8000",
    )


async def devicelink(database: Database, tmp_path: Path, secret: str, *args: str) -> str:
    done = await anyio.to_thread.run_sync(
        lambda: run_devicelink(*args, env=env_with(database, secret), cwd=tmp_path, timeout=60)
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    return f"exit {done.returncode}: {output}"


async def starts(settings: Settings, clock: FakeClock) -> None:
    async with running(settings, clock) as server:
        assert (await server.http.get("/readyz")).status_code == 200


async def test_a_process_with_another_secret_refuses_to_start_and_says_why(
    settings: Settings, clock: FakeClock, database: Database, tmp_path: Path
) -> None:
    await starts(settings, clock)  # the database takes this secret's fingerprint
    refused = await devicelink(
        database, tmp_path, OTHER_SECRET, "serve", "--port", str(free_port())
    )
    assert refused.startswith("exit 2")  # before listening: no wrong answers served
    assert "DEVICELINK_SECRET_KEY is not the secret this database was set up with" in refused
    assert OTHER_SECRET not in refused
    other = settings.model_copy(update={"secret_key": SecretStr(OTHER_SECRET)})
    app = create_app(other, clock=clock)
    with pytest.raises(ConfigurationError, match="secret adopt"):
        async with app.router.lifespan_context(app):
            pass
    await starts(settings, clock)  # the right secret still starts


async def test_secret_adopt_changes_the_secret_on_purpose(
    settings: Settings, clock: FakeClock, database: Database, tmp_path: Path
) -> None:
    await starts(settings, clock)
    adopted = await devicelink(database, tmp_path, OTHER_SECRET, "secret", "adopt", "--yes")
    assert adopted.startswith("exit 0"), adopted
    assert "the database now uses the secret" in adopted
    assert "\ndatabase: " in adopted  # which database, as every admin command says
    assert str(make_url(database.url).database) in adopted.split("\ndatabase: ")[1]
    again = await devicelink(database, tmp_path, OTHER_SECRET, "secret", "adopt", "--yes")
    assert "already uses this secret" in again
    await starts(settings.model_copy(update={"secret_key": SecretStr(OTHER_SECRET)}), clock)
    old = create_app(settings, clock=clock)
    with pytest.raises(ConfigurationError, match="not the secret this database"):
        async with old.router.lifespan_context(old):
            pass
