"""The device's and the browser's side of a flow over HTTP, written once for both of
httpx's clients.

Each step has the shape of httpx's ``Auth.auth_flow``: a generator that yields the
requests a device or a person sends and receives the answers. :func:`run` drives it with
an ``httpx.Client``, :func:`arun` with an ``httpx.AsyncClient``::

    flow = run(device, start_flow())
    await arun(browser, sign_in("alice"))
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

CLIENT_ID = "devicelink-cli"
"""The public client every ``devicelink serve`` has."""
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PASSWORD = "correct horse battery staple"
"""The password of the local accounts the tests create."""
VERIFY_PAGE = "/oauth/device/verify"

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')

T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    method: str
    path: str
    form: dict[str, str] | None = None


Step = Generator[Send, httpx.Response, T]


def run(http: httpx.Client, step: Step[T]) -> T:
    try:
        request = next(step)
        while True:
            request = step.send(http.request(request.method, request.path, data=request.form))
    except StopIteration as done:
        result: T = done.value
        return result


async def arun(http: httpx.AsyncClient, step: Step[T]) -> T:
    try:
        request = next(step)
        while True:
            answer = await http.request(request.method, request.path, data=request.form)
            request = step.send(answer)
    except StopIteration as done:
        result: T = done.value
        return result


def token_form(device_code: str, **form: str) -> dict[str, str]:
    """A device's token request (RFC 8628 section 3.4), ``form`` added or changed."""
    return {
        "grant_type": DEVICE_CODE_GRANT,
        "device_code": device_code,
        "client_id": CLIENT_ID,
        **form,
    }


def assert_active_key(introspection: httpx.Response, username: str) -> dict[str, Any]:
    """An introspection answer (RFC 7662 section 2.2): an active key of ``username``,
    issued to the CLI; its body, for the caller's further checks."""
    assert introspection.status_code == 200
    body: dict[str, Any] = introspection.json()
    assert body["active"] is True
    assert body["sub"] == username
    assert body["client_id"] == CLIENT_ID
    return body


def csrf_of(page: httpx.Response) -> str:
    match = _CSRF.search(page.text)
    assert match, f"no csrf_token on the page ({page.status_code}):\n{page.text[:500]}"
    return match.group(1)


def decision(confirm: httpx.Response, action: str) -> dict[str, str]:
    """The decide form of a confirm page as a browser posts it: the button pressed and
    the page's hidden fields (the CSRF token and the review the page shows)."""
    match = re.search(r'name="review" value="([^"]*)"', confirm.text)
    assert match, f"no review on the confirm page ({confirm.status_code})"
    return {"action": action, "csrf_token": csrf_of(confirm), "review": match.group(1)}


# --- the device ----------------------------------------------------------------------------


def start_flow(**form: str) -> Step[dict[str, Any]]:
    """A device authorization request (RFC 8628 section 3.1) that succeeds; its answer."""
    response = yield Send("POST", "/oauth/device/authorize", {"client_id": CLIENT_ID, **form})
    assert response.status_code == 200, response.text
    flow: dict[str, Any] = response.json()
    return flow


def poll(device_code: str, **form: str) -> Step[httpx.Response]:
    return (yield Send("POST", "/oauth/device/token", token_form(device_code, **form)))


# --- the browser -----------------------------------------------------------------------------


def sign_in(username: str, password: str = PASSWORD) -> Step[None]:
    """Fill in the sign-in form, as a user would."""
    page = yield Send("GET", "/login")
    assert page.status_code == 200, page.text
    form = {"username": username, "password": password, "csrf_token": csrf_of(page)}
    answer = yield Send("POST", "/login", form)
    assert answer.status_code in (302, 303), f"{answer.status_code}: {answer.text[:300]}"


def enter_code(user_code: str, page_url: str = VERIFY_PAGE) -> Step[httpx.Response]:
    """Type ``user_code`` on the code page and press Continue; the answer."""
    page = yield Send("GET", page_url)
    assert page.status_code == 200, page.text
    return (yield Send("POST", VERIFY_PAGE, {"user_code": user_code, "csrf_token": csrf_of(page)}))


def confirm_page(user_code: str, page_url: str = VERIFY_PAGE) -> Step[httpx.Response]:
    """:func:`enter_code`, which must show the confirm page."""
    confirm = yield from enter_code(user_code, page_url)
    assert confirm.status_code == 200, confirm.text
    assert "Approve" in confirm.text
    return confirm


def press(confirm: httpx.Response, action: str) -> Step[httpx.Response]:
    """Press Approve or Deny (``action``) on a confirm page."""
    return (yield Send("POST", "/oauth/device/decide", decision(confirm, action)))


def approve(user_code: str, page_url: str = VERIFY_PAGE) -> Step[None]:
    """Continue with ``user_code``, then Approve on the confirm page."""
    confirm = yield from confirm_page(user_code, page_url)
    done = yield from press(confirm, "approve")
    assert done.status_code == 200, done.text
    assert "Device approved" in done.text
