"""What several scenarios of one server share, made before the runs (setup, not
measured): pending device codes (:class:`CodePool`) and valid API keys (:class:`KeyPool`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import CLIENT_ID, DEVICE_CODE_GRANT, BenchError, Context, log
from bench.targets import DevicelinkTarget, Target
from bench.wrk import create_codes


@dataclass(eq=False)
class CodePool:
    """Pending device codes created through the server's device authorization endpoint
    before the runs (setup, not measured), written one a line to a file that poll.lua
    walks. ``offsets`` is where each wrk thread stopped, so the next run continues there
    and a code is polled again only after all the others."""

    name: str
    target: Target
    count: int
    authorize_path: str
    client_id: str
    token_path: str = "/oauth/device/token"

    codes: list[str] = field(default_factory=list)
    file: Path | None = None
    offsets: list[int] = field(default_factory=list)
    created_per_second: float = 0.0
    sample: str = ""

    def ensure(self, ctx: Context) -> None:
        if self.file is not None:
            return
        log(f"{self.name}: creating {self.count:,} pending device codes (setup, not measured)")
        started = time.monotonic()
        flows = create_codes(
            ctx, self.name, self.target.base_url + self.authorize_path, self.client_id,
            self.count + 1,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        self.created_per_second = len(flows) / elapsed
        log(
            f"{self.name}: created {len(flows):,} codes in {elapsed:.1f} s "
            f"({self.created_per_second:,.0f}/s, wrk authorize_many.lua)"
        )
        codes = [device_code for device_code, _user_code in flows]
        # One code the pool does not use shows a real answer, body and all.
        self.sample = _sample_poll(
            self.target.base_url + self.token_path, codes.pop(), self.client_id
        )
        log(f"{self.name}: a poll of a fresh pending code answers {self.sample}")
        self.codes = codes
        self.file = ctx.workdir / f"{self.name}.txt"
        self.file.write_text("\n".join(codes) + "\n")
        self.offsets = [0] * ctx.options.threads


@dataclass(eq=False)
class KeyPool:
    """Valid API keys: flows started over HTTP, approved through devicelink's service
    layer against the server's own database (as tests/support/accounts.py's
    ``approve_through_service`` does; the logic is copied, tests are not imported),
    then redeemed by a poll of the token endpoint. Written one a line for bearer.lua."""

    name: str
    target: DevicelinkTarget
    count: int
    users: int = 20

    file: Path | None = None
    sample: str = ""

    def ensure(self, ctx: Context) -> None:
        if self.file is not None:
            return
        base = self.target.base_url
        log(f"{self.name}: minting {self.count} API keys for {min(self.users, self.count)} users")
        started = time.monotonic()
        flows = create_codes(
            ctx, self.name, base + "/oauth/device/authorize", CLIENT_ID, self.count
        )
        usernames = [f"bench-user-{i:03d}" for i in range(min(self.users, self.count))]
        asyncio.run(
            _approve_through_service(
                self.target.database_url,
                ctx.secret_key.encode("utf-8"),
                [user_code for _device_code, user_code in flows],
                usernames,
            )
        )
        keys = asyncio.run(_redeem_all(base + "/oauth/device/token", [code for code, _ in flows]))
        log(f"{self.name}: {len(keys)} keys in {time.monotonic() - started:.1f} s")
        import httpx

        answer = httpx.get(base + "/api/me", headers={"Authorization": f"Bearer {keys[0]}"})
        self.sample = f"{answer.status_code} {answer.text.strip()[:200]}"
        if answer.status_code != 200:
            raise BenchError(f"{self.name}: GET /api/me with a fresh key answered {self.sample}")
        self.file = ctx.workdir / f"{self.name}.txt"
        self.file.write_text("\n".join(keys) + "\n")


def _answer(response: Any) -> str:
    """The answer as common.lua classifies it: "200", or "400 <error>"."""
    if 200 <= response.status_code < 300:
        return str(response.status_code)
    try:
        error = response.json().get("error")
    except ValueError:
        error = None
    return f"{response.status_code} {error}" if error else str(response.status_code)


def token_form(device_code: str, client_id: str) -> dict[str, str]:
    return {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": client_id}


async def _polls(url: str, codes: list[str], client_id: str) -> list[Any]:
    """One poll of each code, 16 at a time; the responses."""
    import httpx

    semaphore = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=30) as http:

        async def one(code: str) -> httpx.Response:
            async with semaphore:
                return await http.post(url, data=token_form(code, client_id))

        return list(await asyncio.gather(*(one(c) for c in codes)))


async def poll_all(url: str, codes: list[str], client_id: str) -> list[str]:
    """One poll of each code: the answers, as common.lua classifies them."""
    return [_answer(response) for response in await _polls(url, codes, client_id)]


async def _redeem_all(url: str, codes: list[str]) -> list[str]:
    """The keys of approved codes, one poll each."""
    keys = []
    for response in await _polls(url, codes, CLIENT_ID):
        if response.status_code != 200:
            raise BenchError(f"redeeming an approved code answered {_answer(response)}")
        keys.append(str(response.json()["access_token"]))
    return keys


async def _approve_through_service(
    database_url: str, secret: bytes, user_codes: list[str], usernames: list[str]
) -> None:
    """Approve each user code as one of ``usernames`` (created when missing) through the
    service layer, against the server's own database."""
    from devicelink.core.codes import CodeHasher
    from devicelink.service import DeviceFlowService, StoredKeyIssuer
    from devicelink.service.clock import utc_now
    from devicelink.storage import SqlStore, create_engine_for_url

    store = SqlStore(create_engine_for_url(database_url))
    try:
        flows = DeviceFlowService(store, CodeHasher(secret), StoredKeyIssuer())
        user_ids: list[int] = []
        for username in usernames:
            async with store.transaction() as tx:
                user = await tx.users.get_by_username(username)
                if user is None:
                    user = await tx.users.add(username, None, utc_now())
            user_ids.append(user.id)
        for n, user_code in enumerate(user_codes):
            verdict = await flows.approve(user_code, user_id=user_ids[n % len(user_ids)])
            if verdict != "ok":
                raise BenchError(f"approving {user_code} through the service gave {verdict!r}")
    finally:
        await store.dispose()


def _sample_poll(url: str, device_code: str, client_id: str) -> str:
    import httpx

    response = httpx.post(url, data=token_form(device_code, client_id))
    return f"{response.status_code} {response.text.strip()[:300]}"


@dataclass(eq=False)
class SettledCodePool(CodePool):
    """Device codes that no longer wait: created as a :class:`CodePool`'s, then each
    ``state`` in the server's own database (setup, not measured). "expired": its
    ``expires_at`` moved into the past (the servers run with a lifetime of a day);
    "denied": denied through the repositories as the key issuer denies, with a reason.
    A poll of such a code changes nothing, so a small pool polled as fast as wrk can
    measures what a flood of stale codes costs."""

    state: str = "expired"

    def ensure(self, ctx: Context) -> None:
        if self.file is not None:
            return
        super().ensure(ctx)
        assert isinstance(self.target, DevicelinkTarget)
        asyncio.run(
            _settle(
                self.target.database_url, ctx.secret_key.encode("utf-8"), self.codes, self.state
            )
        )
        self.sample = _sample_poll(
            self.target.base_url + self.token_path, self.codes[0], self.client_id
        )
        log(f"{self.name}: {len(self.codes):,} codes {self.state}; a poll answers {self.sample}")


async def _settle(database_url: str, secret: bytes, codes: list[str], state: str) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from devicelink.core.codes import CodeHasher
    from devicelink.core.models import Status
    from devicelink.service.clock import utc_now
    from devicelink.storage import SqlStore, create_engine_for_url
    from devicelink.storage.tables import device_authorizations

    hasher = CodeHasher(secret)
    hashes = [hasher.device_code(code) for code in codes]
    store = SqlStore(create_engine_for_url(database_url))
    now = utc_now()
    try:
        if state == "expired":
            async with store.engine.begin() as conn:
                await conn.execute(
                    update(device_authorizations)
                    .where(device_authorizations.c.device_code_hash.in_(hashes))
                    .values(expires_at=now - timedelta(seconds=1))
                )
            return
        async with store.transaction() as tx:
            for code_hash in hashes:
                found = await tx.device_authorizations.get_by_device_code(code_hash)
                if found is None or not await tx.device_authorizations.transition(
                    found.id,
                    from_status=Status.PENDING,
                    to_status=Status.DENIED,
                    now=now,
                    reason="bench: refused by the key issuer",
                ):
                    raise BenchError(f"could not deny a code of the pool ({found})")
    finally:
        await store.dispose()
