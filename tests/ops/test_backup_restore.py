"""The backup and restore commands of docs/deploy.md, section 9, run as printed against a
real PostgreSQL: the dump is the operator's alone, restores as the application's role, and
a key issued before the backup works against the restored database (issue 18, item 4)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.accounts import approve_through_service
from tests.support.databases import ADMIN_POSTGRES_URL, pg_admin
from tests.support.http import arun, poll, start_flow
from tests.support.processes import clean_env, devicelink_command, free_port
from tests.support.servers import STRONG_SECRET, Launcher

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def guide_block(name: str) -> str:
    """The shell block the guide marks ``<!-- name: ... -->``."""
    match = re.search(rf"<!-- {name}:[^>]*-->\n```sh\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    assert match, f"docs/deploy.md has no {name} block"
    return match.group(1)


def run_shell(script: str, env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout + result.stderr


@pytest.fixture
def app_role() -> Iterator[tuple[str, str, str]]:
    """A login role of the application's own, its database, and a name for the restored
    database; all dropped afterwards."""
    suffix = secrets.token_hex(4)
    role, database, restored = f"dl_app_{suffix}", f"dl_bk_{suffix}", f"dl_rs_{suffix}"
    asyncio.run(pg_admin(f'CREATE ROLE "{role}" LOGIN'))
    asyncio.run(pg_admin(f'CREATE DATABASE "{database}" OWNER "{role}"'))
    try:
        yield role, database, restored
    finally:
        for name in (database, restored):
            asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(pg_admin(f'DROP ROLE IF EXISTS "{role}"'))


def libpq_env(role: str, database: str, **extra: str) -> dict[str, str]:
    admin = urlsplit(ADMIN_POSTGRES_URL)
    venv_bin = str(Path(devicelink_command()[0]).parent)
    env = clean_env(
        PGHOST=admin.hostname or "127.0.0.1",
        PGPORT=str(admin.port or 5432),
        PGUSER=role,
        PGDATABASE=database,
        **extra,
    )
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return env


async def issue_key(base_url: str, database_url: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        flow = await arun(http, start_flow())
        await approve_through_service(
            database_url, STRONG_SECRET.encode(), flow["user_code"], "backed-up"
        )
        granted = await arun(http, poll(flow["device_code"]))
        assert granted.status_code == 200, granted.text
        return str(granted.json()["access_token"])


async def owner_of(base_url: str, key: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        return await http.get("/api/me", headers={"Authorization": f"Bearer {key}"})


def test_the_guides_backup_restores_as_the_applications_role(
    tmp_path: Path, launch: Launcher, app_role: tuple[str, str, str]
) -> None:
    role, database, restored = app_role
    admin = urlsplit(ADMIN_POSTGRES_URL)
    where = f"{admin.hostname or '127.0.0.1'}:{admin.port or 5432}"

    def devicelink_env(name: str) -> dict[str, str]:
        return libpq_env(
            role,
            name,
            DEVICELINK_DATABASE_URL=f"postgresql://{role}@{where}/{name}",
            DEVICELINK_SECRET_KEY=STRONG_SECRET,
            DEVICELINK_AUTO_MIGRATE="true",
        )

    # A server that issued a key, on a database that belongs to the application's role.
    server = launch(env=devicelink_env(database), cwd=tmp_path)
    key = asyncio.run(
        issue_key(server.base_url, devicelink_env(database)["DEVICELINK_DATABASE_URL"])
    )
    server.stop()

    # The backup, as printed.
    backups = tmp_path / "backups"
    backups.mkdir()
    output = run_shell(guide_block("backup"), libpq_env(role, database), backups)
    assert "backup readable" in output
    (dump,) = backups.glob("devicelink-*.dump")
    assert re.fullmatch(r"devicelink-\d{4}-\d\d-\d\d\.dump", dump.name)
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600

    # The restore, as printed, with this test's names for the role, databases and file.
    script = (
        guide_block("restore")
        .replace("createdb --owner=devicelink devicelink", f"createdb --owner={role} {restored}")
        .replace("devicelink-2026-12-04.dump", dump.name)
    )
    superuser = urlsplit(ADMIN_POSTGRES_URL).username or "postgres"
    script = script.replace("createdb ", f"PGUSER={superuser} createdb ", 1)
    output = run_shell(script, devicelink_env(restored), backups)
    assert "backed-up" in output  # keys list names the key's owner

    # The restored tables belong to the application's role, and the old key works there.
    tables = subprocess.run(
        [
            "psql",
            "-At",
            "-c",
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'",
        ],
        env=libpq_env(role, restored),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert tables.stdout.split() == [role]
    again = launch(env=devicelink_env(restored), cwd=tmp_path, port=free_port())
    answer = asyncio.run(owner_of(again.base_url, key))
    assert answer.status_code == 200, answer.text
    assert answer.json()["username"] == "backed-up"
