"""Fixtures of the browser-page tests: the app reached at its https PUBLIC_URL (so
Secure cookies flow as in a browser), and browsers with their own cookies and address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from devicelink.runtime.settings import Settings
from devicelink.server.app import create_app
from tests.pages.pagetools import Browser, Confirming, Flow, Site
from tests.support.app import FakeClock


@pytest.fixture
def site_settings(settings: Settings) -> Settings:
    return settings


@pytest.fixture
async def site(site_settings: Settings, clock: FakeClock) -> AsyncIterator[Site]:
    app = create_app(site_settings, clock=clock)
    public_url = site_settings.issuer

    @asynccontextmanager
    async def open_browser(ip: str = "198.51.100.20") -> AsyncIterator[Browser]:
        transport = httpx.ASGITransport(app=app, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url=public_url) as http:
            yield Browser(http)

    async with app.router.lifespan_context(app):
        device_transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
        async with httpx.AsyncClient(transport=device_transport, base_url=public_url) as device:
            yield Site(app, clock, public_url, open_browser, device)


@pytest.fixture
async def browser(site: Site) -> AsyncIterator[Browser]:
    async with site.open_browser() as opened:
        yield opened


@pytest.fixture
async def signed_in_flow(site: Site, browser: Browser) -> Flow:
    """alice signed in and a device's flow started: the flow (its code not typed yet)."""
    await site.add_user()
    flow = await site.start_flow()
    await browser.sign_in()
    return flow


@pytest.fixture
async def confirming(browser: Browser, signed_in_flow: Flow) -> Confirming:
    """alice signed in, a device's flow started, its code typed: the confirm page."""
    return Confirming(signed_in_flow, await browser.enter_code(signed_in_flow["user_code"]))


@pytest.fixture
async def approved(browser: Browser, confirming: Confirming) -> Confirming:
    """:func:`confirming`, and alice pressed Approve on that confirm page."""
    await browser.decide(confirming.confirm, "approve")
    return confirming
