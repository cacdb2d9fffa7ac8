"""Authorization codes and PKCE verifiers are secrets the audit knows
(tests/support/secrets_audit.py): one written in clear to a log would fail the suite; and
a whole sign-in, the server's access log and every other record included, writes
neither."""

from __future__ import annotations

import logging

import pytest

from devicelink.core.authcode import new_authorization_code
from tests.authcode.conftest import NativeApp, code_for
from tests.pages.pagetools import Browser, Site
from tests.support.secret_scanner import SecretRegistry, audit_findings
from tests.support.secrets_audit import RecordCollector

pytestmark = pytest.mark.anyio

VERIFIER = "v" * 20 + "-._~" + "0123456789abcdefghijklmnopqrstuvwxyz"
"""RFC 7636 section 4.1: a verifier may hold "." and "~" as well."""


def registry_of(code: str, verifier: str) -> SecretRegistry:
    made = SecretRegistry()
    assert made.add("authorization_code", code)
    assert made.add("code_verifier", verifier)
    return made


def test_a_code_or_verifier_in_a_log_line_is_a_finding() -> None:
    code = new_authorization_code()
    registry = registry_of(code, VERIFIER)
    lines = [
        ("access log", f'"GET /callback?code={code}&state=x HTTP/1.1" 200'),
        ("debug record", f"token request code_verifier={VERIFIER}"),
        ("hex", code.encode().hex()),
    ]
    found = audit_findings(lines, registry)
    assert [(f.where, f.kind) for f in found] == [
        ("access log", "authorization code"),
        ("debug record", "PKCE verifier"),
        ("hex", "authorization code"),
    ]


def test_the_challenge_and_made_up_codes_are_not() -> None:
    app = NativeApp(verifier=VERIFIER)
    registry = registry_of(new_authorization_code(), VERIFIER)
    assert audit_findings([("authorize", app.authorize_url())], registry) == []
    assert not SecretRegistry().add("authorization_code", "abc123")  # a test's made-up code


async def test_a_sign_in_logs_neither_the_code_nor_the_verifier(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    collector = RecordCollector()
    root = logging.getLogger()
    ours = logging.getLogger("devicelink")
    level = ours.level
    root.addHandler(collector)
    ours.setLevel(logging.DEBUG)
    try:
        code = await code_for(signed_in, app)
        token = await site.device.post("/oauth/token", data=app.token_form(code))
        assert token.status_code == 200, token.text
        replay = await site.device.post("/oauth/token", data=app.token_form(code))
        assert replay.status_code == 400
    finally:
        root.removeHandler(collector)
        ours.setLevel(level)

    assert any("/oauth/token" in text for text in collector.texts)  # the access log wrote
    records = [("log records", "\n".join(collector.texts))]
    assert audit_findings(records, registry_of(code, app.verifier)) == []
