"""What a client sees while the database is away: the answers the tests keep for later,
and the two shapes a refusal must have (a friendly page, RFC 6749 JSON)."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import httpx


def assert_friendly_page(response: httpx.Response, status: int = 503) -> None:
    """An HTML error page for a person: the status, no stack trace, no driver detail."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html"), response.headers
    text = response.text
    assert "<h1>" in text
    for leak in ("Traceback", "asyncpg", "sqlalchemy", "OperationalError", 'File "'):
        assert leak not in text, f"{leak!r} leaked into the page:\n{text[:1000]}"


def assert_temporarily_unavailable(response: httpx.Response) -> None:
    """RFC 6749 section 5.2 JSON, 503 ``temporarily_unavailable``, with Retry-After."""
    assert response.status_code == 503, f"{response.status_code}: {response.text[:500]}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["error"] == "temporarily_unavailable", body
    assert set(body) <= {"error", "error_description", "error_uri"}, body
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit(), response.headers
    assert int(retry_after) >= 1, response.headers
    assert response.headers.get("cache-control") == "no-store", response.headers


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange as the client saw it: the answer, or the transport error."""

    label: str
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    transport_error: str | None = None

    @classmethod
    def of(cls, label: str, response: httpx.Response) -> Answer:
        return cls(label, response.status_code, dict(response.headers), response.text)

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def error(self) -> str | None:
        """The OAuth ``error`` of a JSON answer."""
        try:
            body = self.json()
        except ValueError:
            return None
        return body.get("error") if isinstance(body, dict) else None

    def __str__(self) -> str:
        if self.transport_error is not None:
            return f"{self.label}: no answer ({self.transport_error})"
        return f"{self.label}: {self.status} {self.text[:200]!r}"


async def observe(label: str, request: Awaitable[httpx.Response]) -> Answer:
    """Await ``request`` (an httpx call); its answer, or the transport error it raised."""
    try:
        response = await request
    except httpx.TransportError as exc:
        return Answer(label, None, transport_error=repr(exc))
    return Answer.of(label, response)


def response_of(answer: Answer) -> httpx.Response:
    """An :class:`Answer` as an httpx response again, for the shared assertions."""
    assert answer.status is not None, str(answer)
    return httpx.Response(
        answer.status, headers=answer.headers, content=answer.text.encode("utf-8")
    )
