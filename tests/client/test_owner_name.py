"""What the client prints of the server's ``/api/me`` answer (issue 13, finding 2): a
name carrying terminal escapes or newlines, from an old row or a hostile server, is
shown escaped by ``status`` and ``login``, never obeyed."""

from __future__ import annotations

from devicelink.client.api import owner_name


def test_a_name_is_shown_escaped_never_obeyed() -> None:
    assert owner_name({"username": "mallory\x1b[2J\nUser: admin"}) == (
        "mallory\\x1b[2J\\nUser: admin"
    )
    assert owner_name({"sub": "alice"}) == "alice"
    assert owner_name({"username": "", "sub": "bob"}) == "bob"
    assert owner_name({}) is None
