"""``devicelink serve`` with no configuration at all, as a first-time operator runs it.

Real processes, real HTTP on loopback, an empty working directory and an environment
stripped of every ``DEVICELINK_*`` variable.
"""

from __future__ import annotations

import asyncio
import re
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import approve_through_service
from tests.support.http import DEVICE_CODE_GRANT
from tests.support.processes import clean_env, free_port, one_time_passwords, run_devicelink
from tests.support.servers import GRACEFUL_EXIT, Launcher

pytestmark = pytest.mark.slow

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")
STRONG_SECRET = "e2e-" + "s3cr3t-" * 8


def data_files(workdir: Path) -> bytes:
    """The raw bytes of the embedded database, with its WAL and shared memory files."""
    data = workdir / "devicelink-data"
    return b"".join(
        path.read_bytes() for path in sorted(data.glob("devicelink.db*")) if path.is_file()
    )


def test_serve_with_no_configuration_creates_its_data_and_answers_on_its_own_address(
    workdir: Path, launch: Launcher
) -> None:
    assert list(workdir.iterdir()) == []

    server = launch(env=clean_env(), cwd=workdir)

    data = workdir / "devicelink-data"
    secret_file = data / "secret.key"
    assert secret_file.is_file(), f"no secret.key in {sorted(p.name for p in data.iterdir())}"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(secret_file.read_bytes().strip()) >= 32
    assert (data / "devicelink.db").is_file()
    # The operator is told where the server is and where its data lives.
    assert server.base_url in server.stderr()
    assert str(data / "devicelink.db") in server.stderr()
    # ... and, on the first start, the local account to approve devices with.
    assert len(one_time_passwords(server.stderr())) == 1, server.stderr()

    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        # No client_id at all: the default public client devicelink-cli is used.
        response = http.post("/oauth/device/authorize", content=b"", headers=FORM)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert USER_CODE.match(body["user_code"]), body
        assert body["verification_uri"] == f"{server.base_url}/oauth/device/verify"
        assert body["verification_uri_complete"] == (
            f"{server.base_url}/oauth/device/verify?user_code={body['user_code']}"
        )
        assert body["expires_in"] == 600
        assert body["interval"] == 5

        # The same default client can poll for it.
        poll = http.post(
            "/oauth/device/token",
            data={"grant_type": DEVICE_CODE_GRANT, "device_code": body["device_code"]},
        )
        assert poll.status_code == 400, poll.text
        assert poll.json()["error"] == "authorization_pending"

        metadata = http.get("/.well-known/oauth-authorization-server").json()
        assert metadata["issuer"] == server.base_url
        assert metadata["device_authorization_endpoint"] == (
            f"{server.base_url}/oauth/device/authorize"
        )


def test_restarted_embedded_server_keeps_its_secret_and_the_keys_it_issued(
    workdir: Path, launch: Launcher
) -> None:
    port = free_port()
    first = launch(env=clean_env(), cwd=workdir, port=port)
    secret_file = workdir / "devicelink-data" / "secret.key"
    secret = secret_file.read_bytes()
    database_url = f"sqlite:///{workdir / 'devicelink-data' / 'devicelink.db'}"
    with httpx.Client(base_url=first.base_url, timeout=10) as http:
        flow = http.post("/oauth/device/authorize", data={"client_id": "devicelink-cli"}).json()
        asyncio.run(approve_through_service(database_url, secret.strip(), flow["user_code"]))
        granted = http.post(
            "/oauth/device/token",
            data={"grant_type": DEVICE_CODE_GRANT, "device_code": flow["device_code"]},
        )
        assert granted.status_code == 200, granted.text
        key = granted.json()["access_token"]
    assert first.stop() in GRACEFUL_EXIT, first.logs()
    (password,) = one_time_passwords(first.stderr())
    assert password.encode() not in data_files(workdir), "the first password is kept in clear"

    second = launch(env=clean_env(), cwd=workdir, port=port)
    assert secret_file.read_bytes() == secret, "the secret was replaced on restart"
    assert one_time_passwords(second.stderr()) == [], "a second one-time password was printed"
    assert password not in second.stderr()
    with httpx.Client(base_url=second.base_url, timeout=10) as http:
        me = http.get("/api/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "alice"
        # The flow's code stays consumed across the restart.
        again = http.post(
            "/oauth/device/token",
            data={"grant_type": DEVICE_CODE_GRANT, "device_code": flow["device_code"]},
        )
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "secret",
    [None, "changeme"],
    ids=["unset", "weak"],
)
def test_public_url_outside_loopback_without_a_strong_secret_refuses_to_start(
    workdir: Path, secret: str | None
) -> None:
    env = clean_env(DEVICELINK_PUBLIC_URL="https://login.example.com")
    if secret is not None:
        env["DEVICELINK_SECRET_KEY"] = secret
    result = run_devicelink(
        "serve", "--host", "127.0.0.1", "--port", str(free_port()), env=env, cwd=workdir
    )
    assert result.returncode != 0, result.stderr
    assert "DEVICELINK_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    # Outside development no secret is ever generated behind the operator's back.
    assert not (workdir / "devicelink-data" / "secret.key").exists()


def test_plain_http_public_url_outside_loopback_refuses_to_start_and_asks_for_https(
    workdir: Path,
) -> None:
    env = clean_env(
        DEVICELINK_PUBLIC_URL="http://login.example.com",
        DEVICELINK_SECRET_KEY=STRONG_SECRET,
    )
    result = run_devicelink(
        "serve", "--host", "127.0.0.1", "--port", str(free_port()), env=env, cwd=workdir
    )
    assert result.returncode != 0, result.stderr
    assert "DEVICELINK_PUBLIC_URL" in result.stderr
    assert "https" in result.stderr
    assert "Traceback" not in result.stderr


def added_client_secret(result: subprocess.CompletedProcess[str], client_id: str) -> str:
    """The secret ``devicelink clients add --confidential`` printed, checked to be shown once."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert f"client_id: {client_id}" in result.stdout
    shown: list[str] = re.findall(r"^client_secret: (\S+)$", result.stdout, flags=re.MULTILINE)
    assert len(shown) == 1, result.stdout
    assert len(shown[0]) >= 32
    assert (result.stdout + result.stderr).count(shown[0]) == 1
    return shown[0]


def test_confidential_clients_added_on_the_command_line_start_flows_with_basic_auth(
    workdir: Path, launch: Launcher
) -> None:
    # One registered before the first start, in the directory the database was made in
    # (the command uses the same embedded default as serve), one added while the server
    # runs.
    upgraded = run_devicelink("db", "upgrade", env=clean_env(), cwd=workdir)
    assert upgraded.returncode == 0, upgraded.stderr
    early = run_devicelink(
        "clients", "add", "early", "--confidential", env=clean_env(), cwd=workdir
    )
    early_secret = added_client_secret(early, "early")
    server = launch(env=clean_env(), cwd=workdir)
    added = run_devicelink(
        "clients", "add", "mycli", "--confidential", env=clean_env(), cwd=workdir
    )
    client_secret = added_client_secret(added, "mycli")

    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        from_early = http.post(
            "/oauth/device/authorize", auth=("early", early_secret), data={"scope": "api"}
        )
        assert from_early.status_code == 200, from_early.text

        started = http.post(
            "/oauth/device/authorize", auth=("mycli", client_secret), data={"scope": "api"}
        )
        assert started.status_code == 200, started.text
        flow = started.json()
        assert flow["verification_uri"] == f"{server.base_url}/oauth/device/verify"

        poll = http.post(
            "/oauth/device/token",
            auth=("mycli", client_secret),
            data={"grant_type": DEVICE_CODE_GRANT, "device_code": flow["device_code"]},
        )
        assert poll.status_code == 400, poll.text
        assert poll.json()["error"] == "authorization_pending"

        # A confidential client must authenticate, and with its own secret.
        anonymous = http.post("/oauth/device/authorize", data={"client_id": "mycli"})
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json()["error"] == "invalid_client"
        assert "www-authenticate" in anonymous.headers
        for wrong_secret in ("not-" + client_secret, early_secret):
            wrong = http.post(
                "/oauth/device/authorize", auth=("mycli", wrong_secret), data={"scope": "api"}
            )
            assert wrong.status_code == 401, wrong.text
            assert wrong.json()["error"] == "invalid_client"

    # Adding it again is refused and prints no second secret.
    again = run_devicelink(
        "clients", "add", "mycli", "--confidential", env=clean_env(), cwd=workdir
    )
    assert again.returncode != 0
    assert "client_secret" not in again.stdout
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr

    # Client secrets are kept only as keyed hashes.
    stored = data_files(workdir)
    assert client_secret.encode() not in stored
    assert early_secret.encode() not in stored
