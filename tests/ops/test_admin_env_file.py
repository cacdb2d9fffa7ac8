"""Admin commands run without the server's environment (issue 18, item 6): they read the
server's environment file with ``--env-file``, and outside development they never fall
back to a SQLite file of their own that no server reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import fresh_postgres_database, pg_fetch_now
from tests.support.processes import clean_env, run_devicelink
from tests.support.servers import STRONG_SECRET

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def server_database() -> Iterator[str]:
    with fresh_postgres_database("dl_envfile") as url:
        yield url


def write_env_file(path: Path, database_url: str) -> Path:
    path.write_text(
        "# the server's settings, as systemd reads them\n"
        "DEVICELINK_PUBLIC_URL=https://login.example.com\n"
        f"DEVICELINK_SECRET_KEY={STRONG_SECRET}\n"
        f'DEVICELINK_DATABASE_URL="{database_url}"\n'
    )
    return path


def test_users_add_with_the_servers_env_file_writes_to_the_servers_database(
    server_database: str, tmp_path: Path
) -> None:
    env_file = write_env_file(tmp_path / "env", server_database)
    added = run_devicelink(
        "users", "add", "bob", "--password-stdin", "--env-file", str(env_file),
        env=clean_env(), cwd=tmp_path, stdin="a good long password\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    rows = pg_fetch_now(server_database, "SELECT username FROM users")
    assert [row["username"] for row in rows] == ["bob"]
    assert not (tmp_path / "devicelink-data").exists()  # no stray SQLite file


def test_outside_development_no_sqlite_file_is_made_up(tmp_path: Path) -> None:
    env = clean_env(
        DEVICELINK_PUBLIC_URL="https://login.example.com", DEVICELINK_SECRET_KEY=STRONG_SECRET
    )
    added = run_devicelink(
        "users", "add", "bob", "--password-stdin", env=env, cwd=tmp_path, stdin="a good password\n"
    )
    assert added.returncode == 2
    assert "DEVICELINK_DATABASE_URL is not set and there is no embedded database" in added.stderr
    assert "--env-file /etc/devicelink/env" in added.stderr
    assert "Traceback" not in added.stderr
    assert not (tmp_path / "devicelink-data" / "devicelink.db").exists()


def test_in_development_no_database_is_made_up_either(tmp_path: Path) -> None:
    """Issue 16, item 6: run in the wrong folder, `users add` made a fresh database
    there; only `serve` and `db upgrade` create one."""
    added = run_devicelink(
        "users", "add", "bob", "--password-stdin",
        env=clean_env(), cwd=tmp_path, stdin="a good long password\n",
    )  # fmt: skip
    assert added.returncode == 2
    database = tmp_path / "devicelink-data" / "devicelink.db"
    assert f"there is no embedded database at {database}" in added.stderr
    assert "--env-file /etc/devicelink/env, or DEVICELINK_DATABASE_URL" in added.stderr
    assert "Traceback" not in added.stderr
    assert list(tmp_path.iterdir()) == []  # no database, no data folder, no secret


def test_a_variable_of_the_commands_own_environment_wins_over_the_file(
    server_database: str, tmp_path: Path
) -> None:
    env_file = write_env_file(tmp_path / "env", "postgresql://nobody@127.0.0.1:1/none")
    listed = run_devicelink(
        "keys", "list", "--env-file", str(env_file),
        env=clean_env(DEVICELINK_DATABASE_URL=server_database), cwd=tmp_path,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr


def test_a_malformed_env_file_is_a_usage_error(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("DEVICELINK_PUBLIC_URL https://login.example.com\n")
    listed = run_devicelink(
        "keys", "list", "--env-file", str(env_file), env=clean_env(), cwd=tmp_path
    )
    assert listed.returncode == 2
    assert "line 1 is not NAME=VALUE" in listed.stderr
