"""The thin route's protocol errors are rendered once and given again
(:class:`devicelink.http.fast_path.ErrorAnswers`): the same bytes as the full route, in
the same header order, on the first answer and every one after; another answer for
another status, body or header. And its form reader reads what parse_qsl reads."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

import pytest

from devicelink.core.errors import (
    AuthorizationPending,
    OAuthError,
    RateLimited,
    SlowDown,
)
from devicelink.http.errors import json_error_response
from devicelink.http.fast_path import ErrorAnswers, _form_pairs
from devicelink.http.forms import MAX_FIELDS
from devicelink.http.middleware import SECURITY_HEADER_LIST
from tests.http.contract import MakeServer, approve, raw


@pytest.mark.anyio
@pytest.mark.rfc("8628", "3.5")
async def test_poll_errors_answered_again_are_the_same_bytes_on_either_route(
    make_server: MakeServer,
) -> None:
    async with make_server(fast_path=True) as thin, make_server(fast_path=False) as full:
        user = await thin.add_user("alice")
        answers = {}
        for name, srv in (("thin", thin), ("full", full)):
            pending = await srv.start_flow()
            denied = await srv.start_flow()
            assert await srv.runtime.flows.deny(denied["user_code"], user_id=user.id) == "ok"
            seen = []
            for _ in range(3):
                srv.clock.advance(pending["interval"] + 1)
                seen.append(raw(await srv.poll(pending["device_code"])))  # pending
            for _ in range(2):
                seen.append(raw(await srv.poll(pending["device_code"])))  # slow_down
            for _ in range(2):
                seen.append(raw(await srv.poll(denied["device_code"])))
                seen.append(raw(await srv.poll("no-such-code")))
            srv.clock.advance(pending["expires_in"] + 1)
            for _ in range(2):
                seen.append(raw(await srv.poll(pending["device_code"])))  # expired
            answers[name] = seen
        assert answers["thin"] == answers["full"]
        errors = [status_body[2] for status_body in answers["thin"]]
        for error in (b"authorization_pending", b"slow_down", b"access_denied", b"expired_token"):
            assert any(error in body for body in errors)
        # The key once approved, past the answers given again.
        flow = await thin.start_flow()
        await approve(thin, flow, user)
        assert (await thin.poll(flow["device_code"])).status_code == 200


def rendered(error: OAuthError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    response = json_error_response(error)
    return (
        response.status_code,
        [*response.raw_headers, *SECURITY_HEADER_LIST],
        bytes(response.body),
    )


def test_each_error_value_has_its_own_answer() -> None:
    answers = ErrorAnswers()
    errors: list[OAuthError] = [
        AuthorizationPending(),
        AuthorizationPending("another description"),
        SlowDown(10),
        SlowDown(15),
        RateLimited(retry_after=5),
        RateLimited(retry_after=7),
    ]
    for error in errors:  # rendered: the caller adds the security headers
        first = answers.answer(error)
        assert (first.status_code, first.body) == rendered(error)[::2]
    assert len(answers) == len(errors)
    for error in errors:  # given again, the security headers among them
        again = answers.answer(error)
        assert (again.status_code, again.raw_headers, again.body) == rendered(error)
    assert len(answers) == len(errors)


def test_an_answer_given_again_has_headers_of_its_own() -> None:
    answers = ErrorAnswers()
    answers.answer(AuthorizationPending())
    again = answers.answer(AuthorizationPending())
    again.raw_headers.append((b"x-request-id", b"one"))
    assert (b"x-request-id", b"one") not in answers.answer(AuthorizationPending()).raw_headers


def test_at_most_max_entries_answers_are_kept() -> None:
    answers = ErrorAnswers(max_entries=2)
    for interval in (5, 10, 15):
        answers.answer(SlowDown(interval))
    assert len(answers) == 2
    assert answers.answer(SlowDown(5)).body == rendered(SlowDown(5))[2]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "&",
        "a",
        "a=",
        "=b",
        "a=b&a=c",
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=x",
        "device_code=abc_DEF-123&client_id=devicelink-cli",
        "a=b==c&&d&e=&=",
        "a+b=c+d",
        "a=%zz",
        "ü=é&x=y;z",
        "&".join(["f=1"] * MAX_FIELDS),
        "&".join(["f=1"] * (MAX_FIELDS + 1)),
        "&" * MAX_FIELDS,
    ],
)
def test_the_thin_route_reads_a_form_as_parse_qsl_does(text: str) -> None:
    def parsed(read: Callable[[], object]) -> object:
        try:
            return read()
        except ValueError as exc:
            return type(exc)

    expected = parsed(
        lambda: parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    )
    assert parsed(lambda: _form_pairs(text)) == expected


def test_a_long_answer_is_rendered_each_time_never_kept() -> None:
    answers = ErrorAnswers(max_body=100)
    long = AuthorizationPending("x" * 200)
    for _ in range(2):
        assert answers.answer(long).body == rendered(long)[2]
    assert len(answers) == 0
