"""The verification, confirm and result pages (RFC 8628 section 3.3; DESIGN.md defect 6)."""

from __future__ import annotations

import re

import pytest

from devicelink.server.purging import build_maintenance
from devicelink.storage import SqlStore
from devicelink.storage.purge import SqlPurger
from tests.pages.pagetools import Browser, Confirming, Flow, Site, heading_of
from tests.support.http import csrf_of

pytestmark = pytest.mark.anyio


@pytest.mark.rfc("8628", "3.3")
async def test_verification_uri_asks_for_sign_in_first_and_keeps_the_code(
    site: Site, browser: Browser
) -> None:
    await site.add_user()
    flow = await site.start_flow()
    first = await browser.http.get(flow["verification_uri_complete"])
    assert first.status_code == 303
    assert first.headers["location"].startswith("/login?next=")
    signed_in = await browser.sign_in(login_url=first.headers["location"])
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == f"/oauth/device/verify?user_code={flow['user_code']}"
    code_page = await browser.http.get(signed_in.headers["location"])
    assert code_page.status_code == 200
    assert f'value="{flow["user_code"]}"' in code_page.text


@pytest.mark.rfc("8628", "3.3")
async def test_prefilled_code_never_skips_the_confirm_step(
    site: Site, browser: Browser, signed_in_flow: Flow
) -> None:
    page = await browser.http.get(signed_in_flow["verification_uri_complete"])
    assert page.status_code == 200
    assert ">Continue<" in page.text
    assert "Approve" not in page.text
    assert await site.status_of(signed_in_flow["user_code"]) == "pending"


@pytest.mark.rfc("8628", "3.3")
@pytest.mark.rfc("8628", "5.4")
@pytest.mark.defect(6)
async def test_defect_6_confirm_page_shows_who_asked_before_approval(
    site: Site, browser: Browser, confirming: Confirming
) -> None:
    flow, confirm = confirming
    assert confirm.status_code == 200
    text = confirm.text
    assert flow["user_code"] in text  # the code to compare with the terminal
    assert "devicelink CLI" in text  # the client's name
    assert "Use the API as you" in text  # the scope in plain words
    assert "203.0.113.7" in text  # where the request came from
    assert "devicelink-cli/0.1 (linux; test)" in text  # the device's user agent
    assert "just now" in text  # how long ago
    assert 'value="approve"' in text
    assert 'value="deny"' in text
    assert await site.status_of(flow["user_code"]) == "pending"


@pytest.mark.rfc("8628", "5.4")
async def test_confirm_page_labels_the_user_agent_as_what_the_device_reports(
    site: Site, browser: Browser
) -> None:
    await site.add_user()
    flow = await site.start_flow(user_agent='Acme CLI <b>official</b> "verified"')
    await browser.sign_in()
    text = (await browser.enter_code(flow["user_code"])).text
    fact = re.search(r"<dt>Device reports itself as</dt>\s*<dd>(.*?)</dd>", text, re.S)
    assert fact is not None
    # Shown as the device sent it, escaped (never markup of the page), and said to be
    # unverified: anyone who starts a flow chooses what this line says.
    shown = re.search(r'<span class="ua">([^<]*)</span>', fact.group(1))
    assert shown is not None
    assert shown.group(1) == "Acme CLI &lt;b&gt;official&lt;/b&gt; &#34;verified&#34;"
    assert "not verified" in fact.group(1)
    assert "<b>official</b>" not in text


@pytest.mark.rfc("8628", "6.1")
@pytest.mark.parametrize("typed", ["{code}", "{lower}", "{nodash}", "{spaced}", " {lower} "])
async def test_code_is_accepted_in_any_case_with_or_without_dash(
    browser: Browser, signed_in_flow: Flow, typed: str
) -> None:
    code = signed_in_flow["user_code"]
    variants = {
        "code": code,
        "lower": code.lower(),
        "nodash": code.replace("-", ""),
        "spaced": " ".join(code.replace("-", "")),
    }
    confirm = await browser.enter_code(typed.format(**variants))
    assert confirm.status_code == 200
    assert heading_of(confirm) == "Is this your device?"


@pytest.mark.rfc("8628", "3.3")
@pytest.mark.rfc("8628", "3.5")
async def test_approve_gives_the_device_its_key_on_the_next_poll(
    site: Site, browser: Browser, confirming: Confirming
) -> None:
    flow, confirm = confirming
    result = await browser.decide(confirm, "approve")
    assert result.status_code == 200
    assert heading_of(result) == "Device approved"
    assert "return to your terminal" in result.text
    token = await site.poll(flow["device_code"])
    assert token.status_code == 200, token.text
    me = await site.device.get(
        "/api/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    )
    assert me.json()["username"] == "alice"


@pytest.mark.rfc("8628", "3.5")
async def test_deny_answers_access_denied(
    site: Site, browser: Browser, confirming: Confirming
) -> None:
    result = await browser.decide(confirming.confirm, "deny")
    assert heading_of(result) == "Request denied"
    token = await site.poll(confirming.flow["device_code"])
    assert token.json()["error"] == "access_denied"


async def test_double_submit_of_approve_is_harmless(
    site: Site, browser: Browser, confirming: Confirming
) -> None:
    flow, confirm = confirming
    first = await browser.decide(confirm, "approve")
    second = await browser.decide(confirm, "approve")
    assert heading_of(first) == heading_of(second) == "Device approved"
    assert (await site.poll(flow["device_code"])).status_code == 200
    assert (await site.poll(flow["device_code"])).json()["error"] == "invalid_grant"


async def test_deny_after_approve_changes_nothing(
    site: Site, browser: Browser, approved: Confirming
) -> None:
    late_deny = await browser.decide(approved.confirm, "deny")
    assert late_deny.status_code == 409
    assert "already approved" in heading_of(late_deny)
    assert await site.status_of(approved.flow["user_code"]) == "approved"


async def test_approving_an_expired_code_shows_expired_and_changes_nothing(
    site: Site, browser: Browser, confirming: Confirming
) -> None:
    flow, confirm = confirming
    site.clock.advance(601)
    result = await browser.decide(confirm, "approve")
    assert result.status_code == 410
    assert heading_of(result) == "This code has expired"
    assert await site.status_of(flow["user_code"]) == "pending"
    assert (await site.poll(flow["device_code"])).json()["error"] == "expired_token"


async def test_approving_a_used_code_shows_already_used(
    site: Site, browser: Browser, approved: Confirming
) -> None:
    flow, confirm = approved
    assert (await site.poll(flow["device_code"])).status_code == 200
    again = await browser.decide(confirm, "approve")
    assert heading_of(again) == "This code was already used"


@pytest.mark.rfc("8628", "5.1")
async def test_entry_errors_never_tell_whether_a_code_exists(site: Site, browser: Browser) -> None:
    """Unknown and already-decided codes all get the same answer."""
    alice = await site.add_user()
    await browser.sign_in()
    denied = await site.start_flow()
    await site.runtime.flows.deny(denied["user_code"], user_id=alice.id)
    answers = []
    for code in ("BCDF-GHJK", denied["user_code"], "not a code"):
        page = await browser.enter_code(code)
        assert page.status_code == 400
        answers.append(page.text.split('role="alert">', 1)[1].split("<", 1)[0])
    assert len(set(answers)) == 1, answers


@pytest.mark.rfc("8628", "5.1")
async def test_typing_an_expired_code_shows_the_expired_page(site: Site, browser: Browser) -> None:
    """Issue 16: the user learns to start again rather than to retype; the entry still
    counts against the wrong-code limits."""
    await site.add_user()
    await browser.sign_in()
    flow = await site.start_flow()
    site.clock.advance(601)
    page = await browser.enter_code(flow["user_code"])
    assert page.status_code == 410
    assert heading_of(page) == "This code has expired"
    assert "Start the sign-in again on your device" in page.text
    assert await site.status_of(flow["user_code"]) == "pending"
    limited = [await browser.enter_code(flow["user_code"]) for _ in range(10)]
    assert limited[-1].status_code == 429


async def test_an_expired_code_purged_since_says_to_start_again(
    site: Site, browser: Browser
) -> None:
    """Once the purge has removed it, the code is unknown; the answer still says what to do."""
    await site.add_user()
    flow = await site.start_flow()
    site.clock.advance(601 + site.runtime.settings.code_retention + 1)
    store = site.runtime.store
    assert isinstance(store, SqlStore)
    await build_maintenance(site.runtime.settings, SqlPurger(store.engine), site.clock).purge_all()
    await browser.sign_in()  # a day later: the earlier session has ended too
    page = await browser.enter_code(flow["user_code"])
    assert page.status_code == 400
    assert "start it again to get a new code" in page.text


async def test_decide_acts_only_on_the_code_this_session_reviewed(
    site: Site, browser: Browser, signed_in_flow: Flow
) -> None:
    """The decision form carries no code: a forged post cannot name another one."""
    page = await browser.http.get("/oauth/device/verify")
    response = await browser.http.post(
        "/oauth/device/decide",
        data={
            "action": "approve",
            "csrf_token": csrf_of(page),
            "user_code": signed_in_flow["user_code"],
        },
    )
    assert response.status_code == 409  # no review named: nothing to decide
    assert "Nothing was approved or denied" in response.text
    assert await site.status_of(signed_in_flow["user_code"]) == "pending"
