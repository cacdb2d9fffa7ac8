"""``server_error`` from the token endpoint ends the polling at once (RFC 8628 section
3.5: any error but ``authorization_pending`` and ``slow_down`` is final; issue 17: a key
issuer that failed after the user approved left the CLI polling until the code expired).
A server's 500 that is not that OAuth error, and 503 ``temporarily_unavailable``, stay
transient: the same code is polled again."""

from __future__ import annotations

import httpx
import pytest

from devicelink.client import errors
from devicelink.client.commands.failures import ExitCode, failure_for

from .scripted import PENDING, ScriptedServer, Transcript, busy, granted, html, login, oauth

pytestmark = pytest.mark.rfc("8628", "3.5")

FAILED = oauth("server_error", 500, error_description="the server could not issue the key")


def test_server_error_stops_the_polling_at_once_with_its_exit_code() -> None:
    seen = Transcript()
    with pytest.raises(errors.LoginFailedOnServer) as raised:
        login(ScriptedServer(token=[PENDING, FAILED, granted()]), transcript=seen)
    assert len(seen.polls) == 2  # no retry of the failed poll
    assert str(raised.value) == (
        "the server failed to finish the sign-in: the server could not issue the key"
    )
    ending = failure_for(raised.value)
    assert (ending.code, ending.error) == (ExitCode.SERVER_FAILED, "server_error")


def test_server_error_without_a_description_still_says_what_to_do() -> None:
    with pytest.raises(errors.LoginFailedOnServer) as raised:
        login(ScriptedServer(token=[httpx.Response(500, json={"error": "server_error"})]))
    assert "start the login again" in str(raised.value)


@pytest.mark.parametrize(
    "transient",
    [
        pytest.param(html(500), id="500-not-json"),
        pytest.param(httpx.Response(500, json={"detail": "x"}), id="500-not-oauth"),
        pytest.param(busy(503), id="503-temporarily_unavailable"),
        pytest.param(html(502), id="502-proxy"),
    ],
)
def test_other_server_failures_are_polled_again(transient: httpx.Response) -> None:
    seen = login(ScriptedServer(token=[PENDING, transient, granted()]))
    assert len(seen.polls) == 3
    assert seen.result.access_token
