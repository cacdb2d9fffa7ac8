"""A database nobody migrated (issue 18, item 3): `serve` says to run `devicelink db
upgrade` instead of dying with a traceback, an embedding host gets the same message, and
`db upgrade` says what it applied."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.runtime.wiring import build_runtime
from devicelink.storage import upgrade_database
from devicelink.storage.migrate import check_schema_at
from tests.support.databases import fresh_postgres_database
from tests.support.processes import clean_env, free_port, run_devicelink
from tests.support.servers import STRONG_SECRET

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def empty_database() -> Iterator[str]:
    with fresh_postgres_database("dl_unmigrated", migrate=False) as url:
        yield url


def serve(url: str, cwd: Path) -> tuple[int, str]:
    env = clean_env(DEVICELINK_DATABASE_URL=url, DEVICELINK_SECRET_KEY=STRONG_SECRET)
    result = run_devicelink("serve", "--port", str(free_port()), env=env, cwd=cwd, timeout=60)
    return result.returncode, result.stdout + result.stderr


def test_serve_on_an_unmigrated_database_says_to_run_db_upgrade(
    empty_database: str, tmp_path: Path
) -> None:
    code, output = serve(empty_database, tmp_path)
    assert code != 0
    assert "the database has no devicelink tables yet: run `devicelink db upgrade`" in output
    assert "Traceback" not in output


def test_serve_on_a_database_behind_this_release_names_both_revisions(
    empty_database: str, tmp_path: Path
) -> None:
    upgrade_database(empty_database, "0005")
    code, output = serve(empty_database, tmp_path)
    assert code != 0
    assert re.search(r"schema is at revision 0005, this release needs \d{4}", output), output
    assert "run `devicelink db upgrade`" in output
    assert "Traceback" not in output


def test_an_embedding_host_gets_the_same_message(empty_database: str) -> None:
    settings = Settings(
        database_url=empty_database,
        secret_key=SecretStr(STRONG_SECRET),
        public_url="http://127.0.0.1:9000/auth",
    )
    with pytest.raises(ConfigurationError, match=r"run `devicelink db upgrade`"):
        asyncio.run(build_runtime(settings))


def test_db_upgrade_says_what_it_applied_then_that_nothing_was_left(
    empty_database: str, tmp_path: Path
) -> None:
    env = clean_env(DEVICELINK_DATABASE_URL=empty_database, DEVICELINK_SECRET_KEY=STRONG_SECRET)
    upgrade_database(empty_database, "0004")
    first = run_devicelink("db", "upgrade", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    applied = re.search(r"applied (\d+) migration\(s\): (.*)", first.stdout)
    assert applied, first.stdout
    revisions = applied.group(2).split(", ")
    assert revisions[0] == "0005"
    assert int(applied.group(1)) == len(revisions)
    assert revisions == sorted(revisions)
    again = run_devicelink("db", "upgrade", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing to apply" in again.stdout
    check_schema_at(empty_database)  # what serve checks before it starts: now it passes
