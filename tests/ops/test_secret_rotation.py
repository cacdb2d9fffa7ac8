"""Rotating the server secret without a 401 to a valid key (issue 18, item 2): the
procedure of docs/deploy.md, step by step, on both databases. Step 1 runs the old
secret A with the fallback B, step 2 B with the fallback A (what A made is accepted,
and keys and client secrets are rewritten under B as they are used), step 3 B alone,
once ``devicelink secret status`` (a real process) says nothing needs A. Apps run in
this process, through their lifespan, as tests/ops/test_secret_fingerprint.py does; on
PostgreSQL the key checks take the fast path and its key cache.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from datetime import timedelta
from pathlib import Path

import anyio.to_thread
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import make_url, select

from devicelink.core.codes import CodeHasher
from devicelink.core.models import DEVICE_CODE_GRANT
from devicelink.idp.local import hash_password
from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.server.app import create_app
from devicelink.service.flows import Actor
from devicelink.service.instance import rotation_report, secret_state
from devicelink.storage.tables import api_keys
from tests.http.contract import add_client, basic, engine_of, issue_key, me
from tests.support.app import CLIENT_ADDRESS, TEST_SECRET, FakeClock, Server, running
from tests.support.databases import Database
from tests.support.http import PASSWORD, arun, confirm_page, csrf_of, press, sign_in
from tests.support.processes import clean_env, run_devicelink
from tests.support.servers import Launcher

pytestmark = pytest.mark.anyio

A = TEST_SECRET
B = "the-next-secret-" + "Qm7xT2vK9pLw4ZsR8nYc3HbF6jDg5NtE"
UNRELATED = "another-deployments-secret-" + "k" * 30
RESOURCE_SECRET = "resource-server-secret-0123456789"


def configured(settings: Settings, secret: str, *fallbacks: str) -> Settings:
    listed = SecretStr(",".join(fallbacks)) if fallbacks else None
    return settings.model_copy(
        update={"secret_key": SecretStr(secret), "secret_key_fallbacks": listed}
    )


async def starts(settings: Settings, clock: FakeClock) -> None:
    async with running(settings, clock) as server:
        assert (await server.http.get("/readyz")).status_code == 200


async def refused(settings: Settings, clock: FakeClock) -> str:
    app = create_app(settings, clock=clock)
    with pytest.raises(ConfigurationError) as refusal:
        async with app.router.lifespan_context(app):
            pass
    return str(refusal.value)


async def database_secret(server: Server) -> str | None:
    return (await secret_state(server.runtime.store)).fingerprint


async def stored_hash(server: Server, key_id: int) -> bytes:
    async with engine_of(server).connect() as conn:
        found: bytes = (
            await conn.execute(select(api_keys.c.key_hash).where(api_keys.c.id == key_id))
        ).scalar_one()
    return found


async def key_id(server: Server, key: str) -> int:
    answer = await me(server, key)
    assert answer.status_code == 200, answer.text
    owner = await server.runtime.keys.authenticate(key)
    return owner.key.id


async def secret_status(database: Database, tmp_path: Path, secret: str, *fallbacks: str) -> str:
    env = clean_env(
        DEVICELINK_DATABASE_URL=database.url,
        DEVICELINK_SECRET_KEY=secret,
        DEVICELINK_SECRET_KEY_FALLBACKS=",".join(fallbacks),
        DEVICELINK_PUBLIC_URL="http://127.0.0.1:8000",
    )
    done = await anyio.to_thread.run_sync(
        lambda: run_devicelink("secret", "status", env=env, cwd=tmp_path, timeout=60)
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    for shown in (secret, *fallbacks):
        assert shown not in output  # fingerprints only
    named = [line for line in done.stderr.splitlines() if line.startswith("database: ")]
    assert named  # which database, as every admin command says
    assert str(make_url(database.url).database) in named[0]
    return output


def browser(server: Server, cookies: httpx.Cookies | None = None) -> httpx.AsyncClient:
    """A browser on ``server``'s pages, over https as PUBLIC_URL says (its session
    cookie is Secure), carrying ``cookies`` from another process's pages."""
    transport = httpx.ASGITransport(app=server.app, client=CLIENT_ADDRESS)
    return httpx.AsyncClient(transport=transport, base_url="https://testserver", cookies=cookies)


def listed_key_ids(status: str) -> set[int]:
    table = status.split("still need the previous secret:", 1)
    if len(table) == 1:
        return set()
    return {int(match) for match in re.findall(r"^(\d+)\s", table[1], flags=re.MULTILINE)}


async def test_a_key_survives_the_rotation_and_an_unused_one_is_named_before_it_stops(
    settings: Settings, clock: FakeClock, database: Database, tmp_path: Path
) -> None:
    async with running(configured(settings, A), clock) as before:
        alice = await before.add_user("alice")
        used, idle = await issue_key(before, alice), await issue_key(before, alice)
        used_id, idle_id = await key_id(before, used), await key_id(before, idle)
    clock.advance(120)
    async with running(configured(settings, A, B), clock) as step1:
        assert (await me(step1, used)).status_code == 200
    status = await secret_status(database, tmp_path, A, B)
    assert "rotation step 1" in status
    clock.advance(120)
    async with running(configured(settings, B, A), clock) as step2:
        assert await database_secret(step2) == CodeHasher(B.encode()).fingerprint
        assert (await me(step2, used)).status_code == 200  # found under A ...
        assert await stored_hash(step2, used_id) == CodeHasher(B.encode()).api_key(used)
        assert (await me(step2, used)).status_code == 200  # ... and now under B
        fresh = await issue_key(step2, alice)  # made under B: never waits for a rewrite
    status = await secret_status(database, tmp_path, B, A)
    assert "rotation step 2" in status
    assert "1 live API keys not used since then still need the previous secret" in status
    assert listed_key_ids(status) == {idle_id}
    assert "dropping DEVICELINK_SECRET_KEY_FALLBACKS now would end these" in status
    clock.advance(120)
    async with running(configured(settings, B), clock) as step3:
        assert (await me(step3, used)).status_code == 200
        assert (await me(step3, fresh)).status_code == 200
        assert (await me(step3, idle)).status_code == 401  # as the status said


async def test_processes_of_steps_1_and_2_serve_side_by_side_without_rewriting_back(
    settings: Settings, clock: FakeClock
) -> None:
    """The rolling window of step 2: some processes still run step 1. Each accepts a key
    under either secret; only the database's secret (B, once a step-2 process started)
    rewrites, so the stored hash moves once and stays. On PostgreSQL the step-1 process
    checks keys on the fast path, through its key cache, and the step-2 process on the
    general path."""
    async with running(configured(settings, A), clock) as before:
        key = await issue_key(before, await before.add_user("alice"))
        kid = await key_id(before, key)
    general = configured(settings, B, A).model_copy(update={"fast_path": False})
    async with (
        running(configured(settings, A, B), clock) as step1,
        running(general, clock) as step2,
    ):
        assert (await me(step1, key)).status_code == 200  # remembered under A on PostgreSQL
        for _ in range(3):
            assert (await me(step2, key)).status_code == 200
            assert (await me(step1, key)).status_code == 200
            clock.advance(61)  # each use recorded
        assert await stored_hash(step2, kid) == CodeHasher(B.encode()).api_key(key)
        revoked = await step2.http.post(
            "/oauth/revoke", data={"token": key, "client_id": "devicelink-cli"}
        )
        assert revoked.status_code == 200
        await anyio.sleep(0.3)  # the revocation's NOTIFY reaches the other process
        assert (await me(step2, key)).status_code == 401
        assert (await me(step1, key)).status_code == 401


async def test_every_step_starts_and_restarts_and_an_unrelated_secret_is_refused(
    settings: Settings, clock: FakeClock
) -> None:
    fingerprint_a = CodeHasher(A.encode()).fingerprint
    fingerprint_b = CodeHasher(B.encode()).fingerprint
    await starts(configured(settings, A), clock)
    async with running(configured(settings, A, B), clock) as step1:
        assert await database_secret(step1) == fingerprint_a  # step 1 makes nothing with B
    await starts(configured(settings, B, A), clock)  # step 2 takes the database over
    # A process of step 1 restarted once step 2 began refuses, naming step 2's settings:
    # running, it would use keys under A after the count of `secret status` began.
    lagging = await refused(configured(settings, A, B), clock)
    assert "step 2 of a secret rotation began" in lagging
    assert A not in lagging
    assert B not in lagging
    await starts(configured(settings, B, A), clock)
    async with running(configured(settings, B), clock) as step3:
        assert await database_secret(step3) == fingerprint_b
    assert "not the secret this database" in await refused(configured(settings, A), clock)
    for unrelated in (configured(settings, UNRELATED), configured(settings, UNRELATED, A)):
        refusal = await refused(unrelated, clock)
        assert "DEVICELINK_SECRET_KEY is not the secret this database was set up with" in refusal
        assert UNRELATED not in refusal
    await starts(configured(settings, B), clock)


async def test_a_browser_session_its_forms_and_a_typed_code_survive_the_switch(
    settings: Settings, clock: FakeClock
) -> None:
    """A user signed in and opened the code page on a process with A; the next requests
    reach a process of step 2: the session, the form's CSRF token and the user code
    (hashed under A when the device started its flow) are all still good."""
    async with running(configured(settings, A), clock) as before:
        async with before.runtime.store.transaction() as tx:
            await tx.users.add("alice", hash_password(PASSWORD), clock())
        flow = await before.start_flow()
        async with browser(before) as on_a:
            await arun(on_a, sign_in("alice"))
            csrf_under_a = csrf_of(await on_a.get("/oauth/device/verify"))
            cookies = on_a.cookies
        sealed = before.runtime.sealer.seal({"state": "s-1", "nonce": "n-1"})
    async with running(configured(settings, B, A), clock) as step2, browser(step2, cookies) as on_b:
        confirm = await on_b.post(
            "/oauth/device/verify",
            data={"user_code": flow["user_code"], "csrf_token": csrf_under_a},
        )
        assert confirm.status_code == 200, confirm.text
        assert "Approve" in confirm.text
        done = await arun(on_b, press(confirm, "approve"))
        assert "Device approved" in done.text
        assert step2.runtime.sealer.open(sealed, max_age=600) == {"state": "s-1", "nonce": "n-1"}
        newer = await step2.start_flow()  # a code under B, for the same session
        assert "Approve" in (await arun(on_b, confirm_page(newer["user_code"]))).text
    async with running(configured(settings, B), clock) as step3:
        assert step3.runtime.sealer.open(sealed, max_age=600) is None  # A is gone


async def test_a_confidential_clients_secret_is_rewritten_as_it_is_used(
    settings: Settings, clock: FakeClock, database: Database, tmp_path: Path
) -> None:
    async with running(configured(settings, A), clock) as before:
        await add_client(before, "billing-api", secret=RESOURCE_SECRET, resource_server=True)
        key = await issue_key(before, await before.add_user("alice"))
    auth = basic("billing-api", RESOURCE_SECRET)
    async with running(configured(settings, B, A), clock) as step2:
        answer = await step2.http.post("/oauth/introspect", data={"token": key}, headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.json()["active"] is True
    status = await secret_status(database, tmp_path, B, A)
    assert "(none is recorded): billing-api" in status
    async with running(configured(settings, B), clock) as step3:
        answer = await step3.http.post("/oauth/introspect", data={"token": key}, headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.json()["active"] is True  # the key too: introspection rewrote it


async def test_a_confidential_client_whose_requests_all_fail_still_moves_to_the_new_secret(
    settings: Settings, clock: FakeClock
) -> None:
    """The rewrite of a client secret's hash is a transaction of its own: a request
    that ends in an error (here a poll of an unknown, then an expired, device code)
    still authenticated the client, so step 3 accepts its secret."""
    async with running(configured(settings, A), clock) as before:
        await add_client(before, "tv-app", secret=RESOURCE_SECRET)
        auth = basic("tv-app", RESOURCE_SECRET)
        started = await before.http.post(
            "/oauth/device/authorize", data={"scope": "api"}, headers=auth
        )
        assert started.status_code == 200, started.text
    clock.advance(3600)  # the code of step 1 has expired
    async with running(configured(settings, B, A), clock) as step2:
        for device_code in ("an-unknown-device-code", started.json()["device_code"]):
            poll = await step2.http.post(
                "/oauth/token",
                data={"grant_type": DEVICE_CODE_GRANT, "device_code": device_code},
                headers=auth,
            )
            assert poll.status_code == 400, poll.text
            assert poll.json()["error"] in ("invalid_grant", "expired_token")
    async with running(configured(settings, B), clock) as step3:
        answer = await step3.http.post(
            "/oauth/device/authorize", data={"scope": "api"}, headers=auth
        )
        assert answer.status_code == 200, answer.text  # not invalid_client
        wrong = basic("tv-app", "not-" + RESOURCE_SECRET)
        refused = await step3.http.post("/oauth/device/authorize", data={}, headers=wrong)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"


def test_config_check_masks_the_fallbacks_and_refuses_a_short_one(tmp_path: Path) -> None:
    made = [
        run_devicelink("secret", "new", env=clean_env(), cwd=tmp_path).stdout.strip()
        for _ in range(2)
    ]
    assert all(len(secret) >= 32 and "," not in secret for secret in made)
    env = clean_env(
        DEVICELINK_PUBLIC_URL="https://login.example.com",
        DEVICELINK_DATABASE_URL=f"sqlite:///{tmp_path / 'devicelink.db'}",
        DEVICELINK_SECRET_KEY=made[0],
        DEVICELINK_SECRET_KEY_FALLBACKS=f"{made[1]}, {UNRELATED}",
    )
    masked = run_devicelink("config", "check", env=env, cwd=tmp_path)
    output = masked.stdout + masked.stderr
    assert masked.returncode == 0, output
    assert re.search(r"^DEVICELINK_SECRET_KEY_FALLBACKS +\*{8} \(set", output, re.MULTILINE)
    assert made[1] not in output
    assert UNRELATED not in output
    short = run_devicelink(
        "config",
        "check",
        env={**env, "DEVICELINK_SECRET_KEY_FALLBACKS": f"{made[1]},short-one"},
        cwd=tmp_path,
    )
    assert short.returncode != 0
    refusal = short.stdout + short.stderr
    assert "DEVICELINK_SECRET_KEY_FALLBACKS: secret 2 is too weak" in refusal
    assert "short-one" not in refusal
    assert made[1] not in refusal


async def test_a_loopback_sign_ins_code_issued_before_the_switch_is_redeemed_after_it(
    settings: Settings, clock: FakeClock
) -> None:
    """The same-device sign-in's code (60 s) is approved on a process with A and
    redeemed, by the CLI, on a process of step 2."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    redirect_uri = "http://127.0.0.1:50123/callback"
    async with running(configured(settings, A), clock) as before:
        alice = await before.add_user("alice")
        request = await before.runtime.codes.check_request(
            {
                "response_type": "code",
                "client_id": "devicelink-cli",
                "redirect_uri": redirect_uri,
                "code_challenge": challenge.rstrip(b"=").decode(),
                "code_challenge_method": "S256",
                "state": "s",
            }
        )
        code = await before.runtime.codes.approve(
            request, user_id=alice.id, actor=Actor(user_id=alice.id, username="alice")
        )
    async with running(configured(settings, B, A), clock) as step2:
        answer = await step2.http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": "devicelink-cli",
                "code_verifier": verifier,
            },
        )
        assert answer.status_code == 200, answer.text
        assert (await me(step2, answer.json()["access_token"])).status_code == 200


async def test_a_served_process_of_step_2_answers_a_key_of_step_1_over_http(
    settings: Settings, clock: FakeClock, database: Database, tmp_path: Path, launch: Launcher
) -> None:
    """The settings as an EnvironmentFile gives them (the fallback in the environment),
    ``devicelink serve --workers 2`` (every worker checks the secret) and real HTTP."""
    async with running(configured(settings, A), clock) as before:
        key = await issue_key(before, await before.add_user("alice"))
    env = clean_env(
        DEVICELINK_DATABASE_URL=database.url,
        DEVICELINK_SECRET_KEY=B,
        DEVICELINK_SECRET_KEY_FALLBACKS=A,
        DEVICELINK_PUBLIC_URL="http://127.0.0.1:8000",
    )
    served = await anyio.to_thread.run_sync(
        lambda: launch("--workers", "2", env=env, cwd=tmp_path, wait_for="/readyz")
    )
    async with httpx.AsyncClient(base_url=served.base_url) as http:
        for _ in range(4):  # whichever worker answers
            answer = await http.get("/api/me", headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200, answer.text
    assert A not in served.logs()
    assert B not in served.logs()


async def test_the_previous_secret_is_called_safe_to_drop_only_when_nothing_needs_it(
    settings: Settings, clock: FakeClock
) -> None:
    """The verdict of `devicelink secret status`: not while a browser session made under
    A may live, nor while a confidential client may still hold its secret's old hash
    (nothing records whether it authenticated since); once every key moved and the
    sessions ended, safe."""
    async with running(configured(settings, A), clock) as before:
        key = await issue_key(before, await before.add_user("alice"))
    clock.advance(120)
    async with running(configured(settings, B, A), clock) as step2:
        assert (await me(step2, key)).status_code == 200  # moved to B
        store, hasher = step2.runtime.store, CodeHasher(B.encode(), (CodeHasher(A.encode()),))
        lifetimes = (3600,)
        report = await rotation_report(store, hasher, now=clock(), lifetimes=lifetimes)
        assert report.waiting_keys == []
        assert report.previous_needed(clock())  # a session made under A may still live
        later = clock() + timedelta(seconds=3601)
        assert not report.previous_needed(later)
        await add_client(step2, "billing-api", secret=RESOURCE_SECRET, resource_server=True)
        report = await rotation_report(store, hasher, now=later, lifetimes=lifetimes)
        assert report.confidential_clients == ["billing-api"]
        assert report.previous_needed(later)
