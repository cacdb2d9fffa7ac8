"""Lifecycle decisions of a device authorization, as pure functions (RFC 8628 section 3.5).

Nothing here reads a clock or a database: the caller passes the stored record and
``now``, and gets back what to answer and what to record. The service then records it
with a compare-and-set, so two requests can never both act on the same state.

    pending --approve--> approved --consume (the one poll that gets the key)--> consumed
    pending --deny-----> denied
    anything past expires_at reads as expired, and is purged later
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from devicelink.core.errors import (
    AccessDenied,
    ExpiredToken,
    InvalidGrant,
    OAuthError,
    description_text,
)
from devicelink.core.models import DeviceAuthorization, Status


@dataclass(frozen=True, slots=True)
class FlowPolicy:
    """Timing of the flow. Defaults follow DESIGN.md and RFC 8628 sections 3.2 and 3.5."""

    code_lifetime: int = 600
    """Seconds the device code and user code stay usable (``expires_in``)."""
    interval: int = 5
    """Seconds a device waits between polls (``interval``)."""
    slow_down_step: int = 5
    """Seconds added to the interval on each ``slow_down`` (section 3.5 says 5)."""
    max_interval: int = 60
    """The interval never grows past this."""

    def __post_init__(self) -> None:
        if self.code_lifetime < 60 or self.code_lifetime > 86_400:
            raise ValueError("code_lifetime must be between 60 and 86400 seconds")
        if not 1 <= self.interval <= self.max_interval:
            raise ValueError("interval must be between 1 and max_interval seconds")
        if self.slow_down_step < 1:
            raise ValueError("slow_down_step must be at least 1 second")

    def expires_at(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.code_lifetime)


# --- polling (RFC 8628 section 3.5) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issue:
    """Approved: consume the authorization and issue the key, in one transaction."""


@dataclass(frozen=True, slots=True)
class KeepWaiting:
    """Pending and polled at a fair pace: answer ``authorization_pending``."""

    interval: int


@dataclass(frozen=True, slots=True)
class SlowDownTo:
    """Pending but polled too early: answer ``slow_down`` and keep ``interval`` from now on."""

    interval: int


@dataclass(frozen=True, slots=True)
class Refuse:
    """A final answer: the device must stop polling."""

    error: OAuthError


PollDecision = Issue | KeepWaiting | SlowDownTo | Refuse


def decide_poll(
    authorization: DeviceAuthorization | None,
    *,
    client_id: str,
    now: datetime,
    policy: FlowPolicy,
) -> PollDecision:
    """What to answer a device that polls the token endpoint (RFC 8628 section 3.5).

    The order matters (DESIGN.md defect 8): the refusals first (:func:`poll_refusal`),
    then approval, and only then the polling pace (:func:`pace_poll`), so a fast client
    always learns that its code expired or was approved. A poll is recorded exactly when
    no refusal applies and the code is pending, the condition the one-statement poll of
    storage/fast_path/statements.py (POLL) writes on.
    """
    refusal = poll_refusal(authorization, client_id=client_id, now=now)
    if refusal is not None:
        return Refuse(refusal)
    assert authorization is not None  # an unknown code is refused
    if authorization.status is Status.APPROVED:
        return Issue()
    return pace_poll(authorization, now=now, policy=policy)


def poll_refusal(
    authorization: DeviceAuthorization | None, *, client_id: str, now: datetime
) -> OAuthError | None:
    """The final answer to a poll that can get neither the key nor a pace, or None.

    When this returns None the code is pending or approved: a poll is recorded (and
    paced) exactly when it returns None and the code is pending. The one-statement poll
    (storage/fast_path/statements.py, POLL) writes on that condition, restated in SQL
    as: issued to this client, not expired, pending; a refusal added here must be
    added there (tests/storage/test_poll_implementations.py holds the two together).
    """
    if authorization is None or authorization.status is Status.CONSUMED:
        return InvalidGrant()
    if authorization.client_id != client_id:
        # RFC 6749 section 5.2: a grant issued to another client is invalid_grant.
        return InvalidGrant()
    if authorization.is_expired(now):
        return ExpiredToken()
    if authorization.status is Status.DENIED:
        # Denied by the key issuer rather than the user: the device learns why.
        reason = authorization.denial_reason
        return AccessDenied(description_text(reason) if reason else None)
    return None


def pace_poll(
    authorization: DeviceAuthorization, *, now: datetime, policy: FlowPolicy
) -> KeepWaiting | SlowDownTo:
    """The pace of a pending code no refusal applies to: ``slow_down`` when polled
    sooner than its interval after the last poll, with the interval raised.

    Section 3.5: the interval "MUST be increased by 5 seconds for this and all
    subsequent requests"; stored per code so every process sees it. Restated in SQL for
    speed: storage/fast_path/statements.py (POLL), held to this by
    tests/storage/test_poll_implementations.py.
    """
    last = authorization.last_polled_at
    if last is not None and now - last < timedelta(seconds=authorization.interval):
        return SlowDownTo(min(authorization.interval + policy.slow_down_step, policy.max_interval))
    return KeepWaiting(authorization.interval)


# --- the user's decision (RFC 8628 section 3.3) -------------------------------------


class Verdict(StrEnum):
    """Why the user can or cannot act on a code; each has its own page."""

    OK = "ok"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    ALREADY_APPROVED = "already_approved"
    ALREADY_DENIED = "already_denied"
    ALREADY_USED = "already_used"


def decide_review(authorization: DeviceAuthorization | None, *, now: datetime) -> Verdict:
    """Whether a user may still approve or deny this authorization."""
    if authorization is None:
        return Verdict.UNKNOWN
    if authorization.status is Status.CONSUMED:
        return Verdict.ALREADY_USED
    if authorization.is_expired(now):
        return Verdict.EXPIRED
    if authorization.status is Status.APPROVED:
        return Verdict.ALREADY_APPROVED
    if authorization.status is Status.DENIED:
        return Verdict.ALREADY_DENIED
    return Verdict.OK


def decide_consume(authorization: DeviceAuthorization, *, now: datetime) -> bool:
    """True when this authorization may be consumed now: approved, not expired."""
    return authorization.status is Status.APPROVED and not authorization.is_expired(now)


# --- scopes (RFC 6749 section 3.3) ---------------------------------------------------


def parse_scope(raw: str | None) -> tuple[str, ...] | None:
    """Space-delimited scope string to a sorted, de-duplicated tuple; None when absent."""
    if raw is None or raw.strip() == "":
        return None
    tokens = raw.split(" ")
    if any(tok == "" or not _is_scope_token(tok) for tok in tokens):
        raise ValueError("malformed scope")
    return tuple(sorted(set(tokens)))


def _is_scope_token(token: str) -> bool:
    # scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    return all(ch == "\x21" or "\x23" <= ch <= "\x5b" or "\x5d" <= ch <= "\x7e" for ch in token)


def granted_scope(requested: tuple[str, ...] | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The scope to grant, or ValueError when the client asks for one it may not have.

    Restated in SQL for speed: storage/fast_path/statements.py (START)."""
    if requested is None:
        return allowed
    if not set(requested) <= set(allowed):
        raise ValueError("scope not allowed")
    return requested
