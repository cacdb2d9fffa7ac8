"""/api/me on the thin route gives a key's answer again without rendering it again
(:class:`devicelink.http.fast_path.OwnerAnswers`): the same bytes as the full route, in
the same header order, whether rendered or given again; a new answer once the key check
finds the key or its owner changed (any field of either)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from devicelink.core.models import ApiKey, User
from devicelink.http.api import describe_owner
from devicelink.http.fast_path import OwnerAnswers
from devicelink.service.keys import KeyOwner
from tests.http.contract import MakeServer, raw


@pytest.mark.anyio
async def test_a_key_checked_again_gets_the_same_bytes_on_either_route(
    make_server: MakeServer,
) -> None:
    async with make_server(fast_path=True) as thin, make_server(fast_path=False) as full:
        user = await thin.add_user("alice")
        flow = await thin.start_flow()
        assert await thin.runtime.flows.approve(flow["user_code"], user_id=user.id) == "ok"
        key = (await thin.poll(flow["device_code"])).json()["access_token"]
        headers = {"Authorization": f"Bearer {key}"}
        answers = {
            name: [raw(await srv.http.get("/api/me", headers=headers)) for _ in range(3)]
            for name, srv in (("thin", thin), ("full", full))
        }
        assert answers["thin"] == answers["full"]
        assert answers["thin"][0][0] == 200


def owner(username: str = "alice", *, key_name: str = "laptop") -> KeyOwner:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    return KeyOwner(
        key=ApiKey(
            id=7,
            name=key_name,
            user_id=1,
            client_id="devicelink-cli",
            device_authorization_id=3,
            scope=("api",),
            created_at=now,
            expires_at=now + timedelta(days=30),
        ),
        user=User(id=1, username=username),
    )


def test_an_answer_given_again_is_the_rendered_one() -> None:
    answers = OwnerAnswers()
    found = owner()
    first = answers.answer(found)
    # Equal objects, not the same ones: what a key check without a key cache finds.
    again = answers.answer(owner())
    assert len(answers) == 1
    assert (again.status_code, again.body) == (first.status_code, first.body)
    assert again.body == describe_owner(found).body
    # Each answer has headers of its own: the caller appends the request id to them.
    again.raw_headers.append((b"x-request-id", b"one"))
    assert (b"x-request-id", b"one") not in answers.answer(found).raw_headers


def test_a_changed_key_or_owner_is_rendered_afresh() -> None:
    answers = OwnerAnswers()
    found = owner()
    answers.answer(found)
    renamed_user = dataclasses.replace(found.user, username="alice2")
    renamed_key = dataclasses.replace(found.key, name="desktop")
    for changed in (
        KeyOwner(key=found.key, user=renamed_user),
        KeyOwner(key=renamed_key, user=found.user),
    ):
        assert answers.answer(changed).body == describe_owner(changed).body
        assert answers.answer(changed).body != answers.answer(found).body


def test_at_most_max_entries_answers_are_kept() -> None:
    answers = OwnerAnswers(max_entries=2)
    owners = [owner(f"user{n}") for n in range(5)]
    for found in owners:
        answers.answer(found)
    assert len(answers) == 2
    for found in owners:
        assert answers.answer(found).body == describe_owner(found).body
