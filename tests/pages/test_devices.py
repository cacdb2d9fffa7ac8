"""Connected devices: the page and its JSON equivalent, where users cut off their CLIs."""

from __future__ import annotations

import re

import pytest

from tests.pages.pagetools import Browser, Site
from tests.support.http import csrf_of

pytestmark = pytest.mark.anyio


async def sign_in_device(site: Site, browser: Browser, agent: str = "devicelink-cli/0.1") -> str:
    flow = await site.start_flow(user_agent=agent)
    confirm = await browser.enter_code(flow["user_code"])
    await browser.decide(confirm, "approve")
    token = await site.poll(flow["device_code"])
    assert token.status_code == 200, token.text
    return token.json()["access_token"]  # type: ignore[no-any-return]


async def works(site: Site, key: str) -> bool:
    response = await site.device.get("/api/me", headers={"Authorization": f"Bearer {key}"})
    return response.status_code == 200


async def test_devices_page_lists_each_signed_in_cli(site: Site, browser: Browser) -> None:
    await site.add_user()
    await browser.sign_in()
    await sign_in_device(site, browser, "laptop-cli/1.0")
    key = await sign_in_device(site, browser, "build-server-cli/2.0")
    assert await works(site, key)
    page = await browser.http.get("/devices")
    assert page.status_code == 200
    assert "laptop-cli/1.0" in page.text
    assert "build-server-cli/2.0" in page.text
    assert "from 203.0.113.7" in page.text  # where the key was last used
    assert page.text.count(">Revoke<") == 2
    assert "Revoke all" in page.text


async def test_revoking_one_device_leaves_the_others(site: Site, browser: Browser) -> None:
    await site.add_user()
    await browser.sign_in()
    first = await sign_in_device(site, browser, "first")
    second = await sign_in_device(site, browser, "second")
    page = await browser.http.get("/devices")
    first_id = re.search(
        r'value="(\d+)" class="secondary small" aria-label="Revoke devicelink CLI on first',
        page.text,
    )
    assert first_id
    result = await browser.http.post(
        "/devices", data={"csrf_token": csrf_of(page), "revoke": first_id.group(1)}
    )
    assert "Revoked 1 device" in result.text
    assert not await works(site, first)
    assert await works(site, second)


async def test_revoke_all_cuts_off_every_device(site: Site, browser: Browser) -> None:
    await site.add_user()
    await browser.sign_in()
    keys = [await sign_in_device(site, browser, f"cli-{n}") for n in range(3)]
    page = await browser.http.get("/devices")
    result = await browser.http.post(
        "/devices", data={"csrf_token": csrf_of(page), "revoke": "all"}
    )
    assert "Revoked 3 devices" in result.text
    assert [await works(site, key) for key in keys] == [False, False, False]


async def test_revoking_without_the_csrf_token_changes_nothing(
    site: Site, browser: Browser
) -> None:
    await site.add_user()
    await browser.sign_in()
    key = await sign_in_device(site, browser)
    response = await browser.http.post("/devices", data={"revoke": "all"})
    assert response.status_code == 403
    assert await works(site, key)


async def test_one_user_cannot_revoke_anothers_device(site: Site, browser: Browser) -> None:
    await site.add_user()
    await site.add_user("mallory")
    await browser.sign_in()
    victim = await sign_in_device(site, browser)
    victim_id = (
        await site.device.get("/api/keys", headers={"Authorization": f"Bearer {victim}"})
    ).json()["keys"][0]["id"]
    async with site.open_browser("192.0.2.66") as attacker:
        await attacker.sign_in("mallory")
        page = await attacker.http.get("/devices")
        await attacker.http.post(
            "/devices", data={"csrf_token": csrf_of(page), "revoke": victim_id}
        )
        deleted = await attacker.http.delete(f"/api/keys/{victim_id}")
        assert deleted.status_code == 404
    assert await works(site, victim)


async def test_api_keys_lists_and_deletes_with_a_bearer_key(site: Site, browser: Browser) -> None:
    await site.add_user()
    await browser.sign_in()
    old = await sign_in_device(site, browser, "old-laptop")
    current = await sign_in_device(site, browser, "new-laptop")
    auth = {"Authorization": f"Bearer {current}"}
    listing = await site.device.get("/api/keys", headers=auth)
    assert listing.status_code == 200
    keys = listing.json()["keys"]
    assert [key["name"].split(" on ")[1].split(" ")[0] for key in keys] == [
        "new-laptop",
        "old-laptop",
    ]
    assert all(key["active"] for key in keys)
    assert old not in listing.text
    assert current not in listing.text
    deleted = await site.device.delete(f"/api/keys/{keys[1]['id']}", headers=auth)
    assert deleted.status_code == 204
    assert not await works(site, old)
    assert await works(site, current)


async def test_api_keys_needs_a_key_or_a_session(site: Site) -> None:
    response = await site.device.get("/api/keys")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    bad = await site.device.get("/api/keys", headers={"Authorization": "Bearer dlk_nope"})
    assert bad.status_code == 401


async def test_api_keys_works_from_the_signed_in_browser_same_origin_only(
    site: Site, browser: Browser
) -> None:
    await site.add_user()
    await browser.sign_in()
    await sign_in_device(site, browser)
    assert (await browser.http.get("/api/keys")).status_code == 200
    cross = await browser.http.get("/api/keys", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 401
