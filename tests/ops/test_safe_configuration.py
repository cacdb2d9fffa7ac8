"""Outside development (a PUBLIC_URL that is not loopback) an unsafe configuration is
refused at start-up with a message that says what to set; ``devicelink config check``
shows the effective configuration with every secret masked, and fails the same way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from devicelink.cli import main
from tests.support.processes import clean_env, free_port, one_time_passwords, run_devicelink
from tests.support.servers import STRONG_SECRET, Launcher

pytestmark = pytest.mark.slow

PUBLIC = "https://login.example.com"


def serve_once(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    result = run_devicelink(
        "serve", "--host", "127.0.0.1", "--port", str(free_port()), env=env, cwd=cwd
    )
    return result.returncode, result.stdout + result.stderr


def config_check(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """``devicelink config check`` in this process (it starts nothing): exactly ``env``'s
    DEVICELINK_* settings, run from ``cwd``."""
    result = _config_check(env, cwd)
    return result.exit_code, result.stdout + result.stderr


def _config_check(env: dict[str, str], cwd: Path) -> Result:
    overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DEVICELINK_")}
    overrides.update({k: v for k, v in env.items() if k.startswith("DEVICELINK_")})
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, ["config", "check"], env=overrides)
    finally:
        os.chdir(previous)


COMMANDS = {"serve": serve_once, "config-check": config_check}

REFUSED = {
    "missing secret": (
        {"DEVICELINK_PUBLIC_URL": PUBLIC},
        ["DEVICELINK_SECRET_KEY is not set", "secrets.token_urlsafe"],
    ),
    "short secret": (
        {"DEVICELINK_PUBLIC_URL": PUBLIC, "DEVICELINK_SECRET_KEY": "changeme"},
        ["DEVICELINK_SECRET_KEY is too weak", "32 or more random characters"],
    ),
    "repeated secret": (
        {"DEVICELINK_PUBLIC_URL": PUBLIC, "DEVICELINK_SECRET_KEY": "changeme" * 5},
        ["DEVICELINK_SECRET_KEY is too weak"],
    ),
    "http public URL": (
        {
            "DEVICELINK_PUBLIC_URL": "http://login.example.com",
            "DEVICELINK_SECRET_KEY": STRONG_SECRET,
        },
        ["DEVICELINK_PUBLIC_URL must be https://"],
    ),
    "default database password": (
        {
            "DEVICELINK_PUBLIC_URL": PUBLIC,
            "DEVICELINK_SECRET_KEY": STRONG_SECRET,
            "DEVICELINK_DATABASE_URL": "postgresql://postgres:postgres@db.internal/devicelink",
        },
        ["DEVICELINK_DATABASE_URL carries a well-known default password"],
    ),
    "placeholder OIDC client secret": (
        {
            "DEVICELINK_PUBLIC_URL": PUBLIC,
            "DEVICELINK_SECRET_KEY": STRONG_SECRET,
            "DEVICELINK_OIDC_ISSUER": "https://sso.example.com/realms/acme",
            "DEVICELINK_OIDC_CLIENT_ID": "devicelink",
            "DEVICELINK_OIDC_CLIENT_SECRET": "changeme",
        },
        ["DEVICELINK_OIDC_CLIENT_SECRET is a placeholder"],
    ),
    "malformed trusted proxy": (
        {"DEVICELINK_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.1/8"},
        ["DEVICELINK_TRUSTED_PROXIES", "'10.0.0.1/8' is not an IP address or network"],
    ),
}


# serve for the refusals of DESIGN.md (secret, https, default password); config check,
# which shares Settings.check() with serve, for every one.
CASES = [
    pytest.param(command, case, id=f"{command}-{case}")
    for case in REFUSED
    for command in COMMANDS
    if command == "config-check"
    or case in ("missing secret", "short secret", "http public URL", "default database password")
]


@pytest.mark.parametrize(("command", "case"), CASES)
def test_an_unsafe_configuration_is_refused_with_what_to_set(
    workdir: Path, command: str, case: str
) -> None:
    settings, expected = REFUSED[case]
    code, output = COMMANDS[command](clean_env(**settings), workdir)
    assert code != 0, output
    for text in expected:
        assert text in output, output
    assert "refusing to start" in output
    assert "Traceback" not in output
    # Nothing was created behind the operator's back.
    assert not (workdir / "devicelink-data" / "secret.key").exists()


def test_the_first_account_with_its_printed_password_is_refused_outside_development(
    workdir: Path, launch: Launcher
) -> None:
    # A first start in development creates `admin` and prints its one-time password.
    dev = launch(env=clean_env(), cwd=workdir)
    (password,) = one_time_passwords(dev.stderr())
    assert dev.stop() == 0

    # The same installation, now published: refused until the password is changed.
    public = clean_env(DEVICELINK_PUBLIC_URL=PUBLIC, DEVICELINK_SECRET_KEY=STRONG_SECRET)
    for attempt in (serve_once, config_check):
        code, output = attempt(public, workdir)
        assert code != 0, output
        assert "the local account 'admin' still has the one-time password" in output
        assert "devicelink users passwd admin" in output
        assert password not in output

    changed = run_devicelink(
        "users",
        "passwd",
        "admin",
        "--password-stdin",
        env=public,
        cwd=workdir,
        stdin="a new and long password\n",
    )
    assert changed.returncode == 0, changed.stderr
    code, output = config_check(public, workdir)
    assert code == 0, output
    # The database was set up with the development secret: serve refuses the new one
    # until the operator adopts it (issue 18, item 2).
    code, output = serve_once(public, workdir)
    assert code != 0
    assert "not the secret this database was set up with" in output
    adopted = run_devicelink("secret", "adopt", "--yes", env=public, cwd=workdir)
    assert adopted.returncode == 0, adopted.stderr
    server = launch(env=public, cwd=workdir)
    assert one_time_passwords(server.stderr()) == []
    assert server.stop() == 0


def test_outside_development_no_account_with_a_printed_password_is_created(
    workdir: Path, launch: Launcher
) -> None:
    public = clean_env(DEVICELINK_PUBLIC_URL=PUBLIC, DEVICELINK_SECRET_KEY=STRONG_SECRET)
    server = launch(env=public, cwd=workdir)
    assert one_time_passwords(server.stderr()) == []
    assert "devicelink users add NAME --password-stdin" in server.stderr()
    assert server.stop() == 0
    assert list((workdir / "devicelink-data").iterdir()) != []
    assert not (workdir / "devicelink-data" / "admin-password-unchanged").exists()


DB_PASSWORD = "Db-pa55word-7c1e9f"
REDIS_PASSWORD = "Redis-pa55-0b7d2a"
OIDC_SECRET = "Oidc-s3cret-a91f3c"


def _secret_env(**extra: str) -> dict[str, str]:
    return clean_env(
        DEVICELINK_PUBLIC_URL=PUBLIC,
        DEVICELINK_SECRET_KEY=STRONG_SECRET,
        DEVICELINK_DATABASE_URL=(
            f"postgresql://devicelink:{DB_PASSWORD}@db.internal:5432/devicelink"
            f"?ssl=require&password={DB_PASSWORD}"
        ),
        DEVICELINK_REDIS_URL=f"redis://:{REDIS_PASSWORD}@redis.internal:6379/0",
        DEVICELINK_OIDC_ISSUER="https://sso.example.com/realms/acme",
        DEVICELINK_OIDC_CLIENT_ID="devicelink",
        DEVICELINK_OIDC_CLIENT_SECRET=OIDC_SECRET,
        DEVICELINK_TRUSTED_PROXIES="10.0.0.0/8",
        **extra,
    )


def _assert_masked(output: str) -> None:
    for secret in (STRONG_SECRET, DB_PASSWORD, REDIS_PASSWORD, OIDC_SECRET):
        assert secret not in output, f"{secret[:6]}... shown by config check:\n{output}"


def test_config_check_prints_the_effective_configuration_with_secrets_masked(
    workdir: Path,
) -> None:
    result = _config_check(_secret_env(), workdir)
    output = result.stdout + result.stderr
    assert result.exit_code == 0, output
    _assert_masked(output)
    lines = {
        line.split()[0]: line.split(None, 1)[1]
        for line in result.stdout.splitlines()
        if line.startswith("DEVICELINK_")
    }
    assert lines["DEVICELINK_PUBLIC_URL"] == PUBLIC
    assert lines["DEVICELINK_DATABASE_URL"] == (
        "postgresql://devicelink:********@db.internal:5432/devicelink?ssl=require&password=********"
    )
    assert lines["DEVICELINK_REDIS_URL"] == "redis://:********@redis.internal:6379/0"
    assert lines["DEVICELINK_SECRET_KEY"].startswith("********")
    assert lines["DEVICELINK_OIDC_CLIENT_SECRET"].startswith("********")
    assert lines["DEVICELINK_TRUSTED_PROXIES"] == "10.0.0.0/8"
    assert lines["DEVICELINK_INTERVAL"] == "5 (default)"
    assert "configuration OK" in result.stdout


def test_config_check_fails_with_the_problems_and_still_masks_secrets(workdir: Path) -> None:
    env = _secret_env()
    env["DEVICELINK_PUBLIC_URL"] = "http://login.example.com"
    result = _config_check(env, workdir)
    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert "DEVICELINK_PUBLIC_URL must be https://" in result.stderr
    assert "DEVICELINK_REDIS_URL" in result.stdout
    _assert_masked(output)


def test_config_check_reports_a_malformed_value_without_echoing_it(workdir: Path) -> None:
    env = _secret_env(DEVICELINK_INTERVAL=f"five-{DB_PASSWORD}")
    result = _config_check(env, workdir)
    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert "DEVICELINK_INTERVAL" in result.stderr
    assert "Traceback" not in output
    _assert_masked(output)
