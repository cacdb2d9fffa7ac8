"""Helpers of the browser-page tests: a browser with its own cookies and address, the
site it talks to, and readers of the CSRF token and heading of a page."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx
from fastapi import FastAPI

from devicelink.core.models import User
from devicelink.idp.local import hash_password
from devicelink.runtime.wiring import Runtime
from tests.support.app import FakeClock
from tests.support.http import PASSWORD, csrf_of, decision, token_form


def heading_of(page: httpx.Response) -> str:
    match = re.search(r"<h1>(.*?)</h1>", page.text, re.S)
    return match.group(1).strip() if match else ""


@dataclass
class Browser:
    """One browser: its own cookie jar and client address."""

    http: httpx.AsyncClient

    async def sign_in(
        self, username: str = "alice", password: str = PASSWORD, *, login_url: str = "/login"
    ) -> httpx.Response:
        """Fill in the sign-in form found at ``login_url``, as a user would."""
        page = await self.http.get(login_url)
        form = {"username": username, "password": password, "csrf_token": csrf_of(page)}
        next_field = re.search(r'name="next" value="([^"]*)"', page.text)
        if next_field:
            form["next"] = html.unescape(next_field.group(1))
        return await self.http.post("/login", data=form)

    async def enter_code(self, user_code: str) -> httpx.Response:
        page = await self.http.get("/oauth/device/verify")
        return await self.http.post(
            "/oauth/device/verify", data={"user_code": user_code, "csrf_token": csrf_of(page)}
        )

    async def decide(self, confirm_page: httpx.Response, action: str) -> httpx.Response:
        return await self.http.post("/oauth/device/decide", data=decision(confirm_page, action))


@dataclass
class Site:
    app: FastAPI
    clock: FakeClock
    public_url: str
    open_browser: Callable[..., AbstractAsyncContextManager[Browser]]
    device: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.devicelink
        return runtime

    async def add_user(self, username: str = "alice", password: str = PASSWORD) -> User:
        async with self.runtime.store.transaction() as tx:
            return await tx.users.add(username, hash_password(password), self.clock())

    async def start_flow(
        self, user_agent: str = "devicelink-cli/0.1 (linux; test)"
    ) -> dict[str, Any]:
        response = await self.device.post(
            "/oauth/device/authorize",
            data={"client_id": "devicelink-cli"},
            headers={"User-Agent": user_agent},
        )
        assert response.status_code == 200, response.text
        flow: dict[str, Any] = response.json()
        return flow

    async def poll(self, device_code: str) -> httpx.Response:
        return await self.device.post("/oauth/device/token", data=token_form(device_code))

    async def status_of(self, user_code: str) -> str:
        review = await self.runtime.flows.review(user_code)
        assert review.authorization is not None
        return review.authorization.status.value


Flow = dict[str, Any]
"""A device's flow as the device authorization endpoint answered it."""


class Confirming(NamedTuple):
    """A device's flow, and the confirm page its user sees after typing its code."""

    flow: Flow
    confirm: httpx.Response
