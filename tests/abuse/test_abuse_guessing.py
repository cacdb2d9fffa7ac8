"""User codes guessed from many browser sessions, accounts and addresses, against a real
``devicelink serve`` (RFC 8628 section 5.1).

Failed code entries are limited to 5 per 15 minutes per session and 20 per hour per
account and per address (DESIGN.md). The browsers connect from 127.0.0.3, the server's
trusted proxy, and name their own address in ``X-Forwarded-For``.

How many guesses get through: at most 20 per account and 20 per address an hour when
they come one after the other, and when they arrive together: checking the limit, looking
the code up and counting a failure are one step per limit key.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from itertools import count

import httpx
import pytest

from tests.abuse.attack import PROXY_ADDRESS, figure, wrong_codes
from tests.support.accounts import SESSION_COOKIE, add_users, open_sessions
from tests.support.http import CLIENT_ID, PASSWORD, csrf_of
from tests.support.servers import STRONG_SECRET, ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.rfc("8628", "5.1")]

DEVICE_ADDRESS = "127.0.0.4"
"""Where this module's devices start their flows (see conftest.py)."""
SESSION_LIMIT, ACCOUNT_LIMIT, ADDRESS_LIMIT = 5, 20, 20
ACCOUNTS = [f"guesser{i:02d}" for i in range(1, 11)]
RACERS = [f"racer{i:02d}" for i in range(1, 11)]
SESSIONS_EACH = 8
_addresses = count(1)


@pytest.fixture(scope="module")
def accounts(server: ServerProcess) -> list[str]:
    add_users(server.database_url, ["alice", "bob", "carol", *ACCOUNTS, *RACERS])
    return ACCOUNTS


@pytest.fixture(scope="module")
def victim_code(server: ServerProcess) -> Iterator[str]:
    """The user code of a real pending flow, started by a device elsewhere."""
    transport = httpx.HTTPTransport(local_address=DEVICE_ADDRESS)
    with httpx.Client(base_url=server.base_url, transport=transport, timeout=10) as device:
        answer = device.post("/oauth/device/authorize", data={"client_id": CLIENT_ID})
        assert answer.status_code == 200, answer.text
        yield answer.json()["user_code"]


def signed_in(server: ServerProcess, usernames: list[str]) -> list[str]:
    """Signed-in sessions (tests/support/accounts.py): password guessing has its own test,
    and dozens of argon2 sign-ins would take seconds."""
    return open_sessions(server.database_url, STRONG_SECRET, usernames)


def fresh_address() -> str:
    """A client address no other test of this module uses (TEST-NET-2, 198.51.100.0/24)."""
    number = next(_addresses)
    return f"198.51.{100 + number // 250}.{number % 250}"


@asynccontextmanager
async def browser(
    server: ServerProcess, address: str, session: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of its own (cookies, connection) seen by the server at ``address``,
    signed in with the session token ``session`` (see :func:`signed_in`)."""
    async with httpx.AsyncClient(
        base_url=server.base_url,
        transport=httpx.AsyncHTTPTransport(local_address=PROXY_ADDRESS),
        headers={"X-Forwarded-For": address},
        cookies={SESSION_COOKIE: session} if session else None,
        timeout=30,
    ) as http:
        yield http


async def code_page(http: httpx.AsyncClient) -> str:
    """Open the code page of a signed-in browser; its CSRF token."""
    page = await http.get("/oauth/device/verify")
    assert page.status_code == 200, f"{page.status_code}: {page.text[:300]}"
    return csrf_of(page)


async def enter(http: httpx.AsyncClient, csrf: str, code: str) -> httpx.Response:
    return await http.post("/oauth/device/verify", data={"user_code": code, "csrf_token": csrf})


async def guess_until_refused(http: httpx.AsyncClient, csrf: str, most: int = 10) -> int:
    """Guess wrong codes until the server refuses (429); how many it looked up (400)."""
    looked_up = 0
    for code, _ in zip(wrong_codes(), range(most), strict=False):
        answer = await enter(http, csrf, code)
        if answer.status_code == 429:
            assert int(answer.headers["Retry-After"]) > 0
            assert "Too many wrong codes" in answer.text
            return looked_up
        assert answer.status_code == 400, answer.text
        assert "That code is not valid" in answer.text
        looked_up += 1
    return looked_up


def guesses_until_refused(
    server: ServerProcess, sessions: list[str], address: Callable[[], str]
) -> list[int]:
    """Each session in turn, from ``address()``, guesses until refused: how many guesses
    each got looked up."""

    async def attack() -> list[int]:
        looked_up = []
        for session in sessions:
            async with browser(server, address(), session) as http:
                looked_up.append(await guess_until_refused(http, await code_page(http)))
        return looked_up

    return asyncio.run(attack())


def right_code(server: ServerProcess, code: str, tries: list[tuple[str, str]]) -> list[int]:
    """The answer to ``code`` typed by each (address, session), in turn."""

    async def enter_all() -> list[int]:
        statuses = []
        for address, session in tries:
            async with browser(server, address, session) as http:
                statuses.append((await enter(http, await code_page(http), code)).status_code)
        return statuses

    return asyncio.run(enter_all())


def test_ten_sessions_of_one_account_get_20_guesses_an_hour(
    server: ServerProcess, accounts: list[str], victim_code: str
) -> None:
    """Ten browser sessions of one account, each from its own address."""
    sessions = signed_in(server, ["alice"] * 11 + ["bob"])

    per_session = guesses_until_refused(server, sessions[:10], fresh_address)
    figure(
        "one account, 10 sessions from 10 addresses",
        f"{sum(per_session)} guesses looked up, then 429 (per session: {per_session})",
    )
    assert max(per_session) <= SESSION_LIMIT
    assert sum(per_session) == ACCOUNT_LIMIT

    # Even the right code is refused to the account now, from a fresh address; another
    # account is not affected.
    tries = [(fresh_address(), sessions[10]), (fresh_address(), sessions[11])]
    assert right_code(server, victim_code, tries) == [429, 200]


def test_ten_accounts_from_one_address_get_20_guesses_an_hour(
    server: ServerProcess, accounts: list[str], victim_code: str
) -> None:
    address = fresh_address()
    sessions = signed_in(server, [*accounts, "bob", "bob"])

    per_account = guesses_until_refused(server, sessions[:10], lambda: address)
    figure(
        "10 accounts from one address",
        f"{sum(per_account)} guesses looked up, then 429 (per account: {per_account})",
    )
    assert max(per_account) <= SESSION_LIMIT
    assert sum(per_account) == ADDRESS_LIMIT

    # From that address even the right code is refused, to any account.
    tries = [(address, sessions[10]), (fresh_address(), sessions[11])]
    assert right_code(server, victim_code, tries) == [429, 200]


async def _race(server: ServerProcess, sessions: list[str]) -> Counter[int]:
    """Every session, from one address, guesses once, all at once."""
    address = fresh_address()
    async with AsyncExitStack() as stack:
        browsers = [
            await stack.enter_async_context(browser(server, address, session))
            for session in sessions
        ]
        tokens = await asyncio.gather(*(code_page(http) for http in browsers))
        codes = wrong_codes()
        answers = await asyncio.gather(
            *(enter(http, csrf, next(codes)) for http, csrf in zip(browsers, tokens, strict=True))
        )
    return Counter(answer.status_code for answer in answers)


@pytest.fixture(scope="module")
def race(server: ServerProcess, accounts: list[str]) -> Counter[int]:
    """10 accounts with 8 sessions each, from one address, guess at the same moment
    (more guesses at once than the server's database pool has connections, 30, so that
    the outcome does not depend on how fast the machine is)."""
    sessions = signed_in(server, [name for name in RACERS for _ in range(SESSIONS_EACH)])
    return asyncio.run(_race(server, sessions))


def test_concurrent_guesses_from_one_address_are_measured(race: Counter[int]) -> None:
    figure(
        f"{sum(race.values())} guesses at once from one address "
        f"({len(RACERS)} accounts x {SESSIONS_EACH} sessions)",
        f"{race[400]} looked up, {race[429]} got 429",
    )
    assert set(race) <= {400, 429}, race


def test_concurrent_guesses_from_one_address_stay_within_20(race: Counter[int]) -> None:
    assert race[400] <= ADDRESS_LIMIT, race


def test_password_guessing_is_limited_too(server: ServerProcess, accounts: list[str]) -> None:
    """One after the other: 10 wrong passwords per address (then even the right one is 429)."""
    address = fresh_address()

    async def attack() -> list[int]:
        statuses = []
        async with browser(server, address) as http:
            for _ in range(12):
                page = await http.get("/login")
                answer = await http.post(
                    "/login",
                    data={"username": "carol", "password": "guess", "csrf_token": csrf_of(page)},
                )
                statuses.append(answer.status_code)
            page = await http.get("/login")
            right = await http.post(
                "/login",
                data={"username": "carol", "password": PASSWORD, "csrf_token": csrf_of(page)},
            )
            statuses.append(right.status_code)
        return statuses

    statuses = asyncio.run(attack())
    figure("wrong passwords from one address", f"{statuses.count(400)} tried, then 429")
    assert statuses == [400] * 10 + [429] * 3
