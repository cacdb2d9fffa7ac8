"""The deployment guide's files (issue 18, item 7): deploy/devicelink.env and
deploy/devicelink.service are what docs/deploy.md prints, systemd reads the environment
file as meant (no comment after a value), and `config check` accepts it once its
placeholders are filled in."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import pytest

from devicelink.runtime.settings import Settings
from tests.support.processes import config_check
from tests.support.servers import STRONG_SECRET

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / "deploy" / "devicelink.env"
UNIT_FILE = ROOT / "deploy" / "devicelink.service"
GUIDE = (ROOT / "docs" / "deploy.md").read_text()


def systemd_environment(text: str) -> dict[str, str]:
    """The variables systemd's EnvironmentFile= gives: comment lines skipped, the whole
    rest of the line after "=" the value."""
    variables = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        name, sep, value = line.partition("=")
        assert sep == "=", f"not NAME=VALUE: {line!r}"
        variables[name.strip()] = value
    return variables


@pytest.mark.parametrize("path", [ENV_FILE, UNIT_FILE], ids=["env", "unit"])
def test_the_guide_prints_the_files_of_the_repository(path: Path) -> None:
    assert path.read_text() in GUIDE


def test_no_value_of_the_environment_file_carries_a_comment() -> None:
    for name, value in systemd_environment(ENV_FILE.read_text()).items():
        assert not re.search(r"\s#", value), f"{name}'s value would include a comment"
        assert value == value.strip(), f"{name}'s value has surrounding spaces"


def test_config_check_accepts_the_environment_file_once_filled_in(tmp_path: Path) -> None:
    env = systemd_environment(ENV_FILE.read_text())
    code, output = config_check(env, tmp_path, "--workers", "4")
    assert code != 0, "the unfilled example must not pass for a configuration"
    filled = {
        name: re.sub(r"REPLACE_[A-Z_]+", lambda _: secrets.token_urlsafe(24), value)
        for name, value in env.items()
    }
    filled["DEVICELINK_SECRET_KEY"] = STRONG_SECRET
    code, output = config_check(filled, tmp_path, "--workers", "4")
    assert code == 0, output
    # No warning but that the example's provider cannot be reached from this machine.
    warnings = [line for line in output.splitlines() if "warning" in line]
    assert [line for line in warnings if "could not be reached from here" not in line] == []


def test_the_guide_counts_connections_to_postgresql_as_config_check_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 18, item 9: the guide's 2 machines of 4 workers fit PostgreSQL's default
    max_connections (100, 3 of them kept for superusers) with the example file, with room
    for admin commands and backups; the figures it prints are the ones config check says."""
    for name in [name for name in os.environ if name.startswith("DEVICELINK_")]:
        monkeypatch.delenv(name)
    env = systemd_environment(ENV_FILE.read_text())
    serve = re.search(r"^ExecStart=.* serve .*--workers (\d+)$", UNIT_FILE.read_text(), re.M)
    assert serve
    workers = int(serve.group(1))
    machines = 2  # the diagram at the top of the guide
    defaults = Settings(database_url=env["DEVICELINK_DATABASE_URL"])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    guide = Settings()
    for settings in (defaults, guide):
        per_worker = settings.max_connections_per_worker()
        assert per_worker is not None
        all_workers = machines * workers
        assert f"{all_workers} x {per_worker} = {all_workers * per_worker}" in GUIDE
    guide_per_worker = guide.max_connections_per_worker()
    assert guide_per_worker is not None
    assert f"at most {guide_per_worker} per worker, {guide_per_worker * workers} for" in GUIDE
    assert machines * workers * guide_per_worker <= 97 - 10


def test_the_unit_checks_and_serves_with_the_same_workers_on_its_own_address() -> None:
    unit = UNIT_FILE.read_text()
    check = re.search(r"^ExecStartPre=.* config check --workers (\d+)$", unit, re.MULTILINE)
    serve = re.search(
        r"^ExecStart=.* serve --host \$\{LISTEN_HOST\} .*--workers (\d+)$", unit, re.M
    )
    assert check
    assert serve
    assert check.group(1) == serve.group(1)


DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def test_the_container_image_installs_as_the_guide_does_and_runs_unprivileged() -> None:
    """The suite's machines run no container daemon, so the image is not built here;
    what can be checked without one is: the guide's install (the wheel, with
    requirements.lock as constraints), a user of its own, the port and health check of
    serve, the Python the project requires, and files it copies that exist."""
    text = DOCKERFILE.read_text()
    assert "pip wheel --no-deps" in text
    assert "--constraint requirements.lock" in text
    assert '"devicelink[server] @ file://' in text
    assert "USER devicelink" in text
    assert 'CMD ["devicelink", "serve", "--host", "0.0.0.0", "--port", "8000"]' in text
    assert "/readyz" in text
    required = re.search(r'requires-python = ">=(\d+\.\d+)"', (ROOT / "pyproject.toml").read_text())
    assert required is not None
    assert all(
        f"python:{required.group(1)}-slim" in line
        for line in text.splitlines()
        if line.startswith("FROM")
    )
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for name in copied.split():
            assert (ROOT / name).exists(), name
