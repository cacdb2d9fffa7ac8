"""Security review findings about configuration (issue 13): several workers without Redis
multiply every rate limit; an http upstream issuer outside development; database drivers
that log statement parameters at debug."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from devicelink.runtime.logging import configure_logging
from tests.support.processes import clean_env, config_check, free_port, run_devicelink
from tests.support.servers import STRONG_SECRET

PRODUCTION = {"DEVICELINK_PUBLIC_URL": "https://login.example.com"}


@pytest.mark.slow
def test_serve_with_workers_and_no_redis_is_refused_outside_development(workdir: Path) -> None:
    env = clean_env(**PRODUCTION, DEVICELINK_SECRET_KEY=STRONG_SECRET)
    result = run_devicelink(
        "serve", "--workers", "4", "--port", str(free_port()), env=env, cwd=workdir
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "4 workers without DEVICELINK_REDIS_URL" in output
    assert "every limit is 4 times what it says" in output
    assert "Traceback" not in output


def test_config_check_with_workers_says_the_same(workdir: Path) -> None:
    env = clean_env(**PRODUCTION, DEVICELINK_SECRET_KEY=STRONG_SECRET)
    code, output = config_check(env, workdir, "--workers", "3")
    assert code != 0
    assert "3 workers without DEVICELINK_REDIS_URL" in output
    with_redis = clean_env(
        **PRODUCTION,
        DEVICELINK_SECRET_KEY=STRONG_SECRET,
        DEVICELINK_REDIS_URL="redis://redis.internal:6379",
    )
    code, output = config_check(with_redis, workdir, "--workers", "3")
    assert code == 0, output
    assert "workers without" not in output


def test_in_development_several_workers_without_redis_are_a_loud_warning(
    workdir: Path,
) -> None:
    code, output = config_check(clean_env(), workdir, "--workers", "2")
    assert code == 0, output
    assert "warning: 2 workers without DEVICELINK_REDIS_URL" in output


def test_an_http_upstream_issuer_is_refused_outside_development(workdir: Path) -> None:
    env = clean_env(
        **PRODUCTION,
        DEVICELINK_SECRET_KEY=STRONG_SECRET,
        DEVICELINK_OIDC_ISSUER="http://sso.example.com/realms/acme",
        DEVICELINK_OIDC_CLIENT_ID="devicelink",
    )
    code, output = config_check(env, workdir)
    assert code != 0
    assert "DEVICELINK_OIDC_ISSUER must be https:// outside development" in output


@pytest.mark.parametrize("driver", ["aiosqlite", "asyncpg", "sqlalchemy.engine"])
def test_debug_logging_never_reaches_the_database_drivers_parameters(driver: str) -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        configure_logging("json", "debug")
        assert root.isEnabledFor(logging.DEBUG)
        assert not logging.getLogger(driver).isEnabledFor(logging.DEBUG)
        assert not logging.getLogger(driver).isEnabledFor(logging.INFO)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
