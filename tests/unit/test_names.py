"""Account names (issue 13, finding 2): printable, bounded, unique after NFKC and case
folding; and every value escaped before it reaches a terminal."""

from __future__ import annotations

import pytest

from devicelink.core.names import NAME_LENGTH, name_key, printable_name, terminal_safe


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("alice", "alice"),
        ("  alice  ", "alice"),
        ("\uff41\uff4c\uff49\uff43\uff45", "alice"),  # full-width letters: NFKC
        ("Zoë", "Zoë"),
        ("jean dupont", "jean dupont"),
        ("a" * NAME_LENGTH, "a" * NAME_LENGTH),
    ],
)
def test_a_printable_name_is_kept_in_its_nfkc_form(raw: str, name: str) -> None:
    assert printable_name(raw) == name


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "admin\u200b",  # zero-width space: shows as "admin"
        "admin\u202e",  # right-to-left override
        "mallory\nforged row",
        "mallory\x1b[2K",
        "mallory\x9b2K",  # the one-byte CSI of C1 controls
        "tab\there",
        "a" * (NAME_LENGTH + 1),
    ],
)
def test_a_name_a_terminal_or_a_reader_would_misread_is_refused(raw: str) -> None:
    assert printable_name(raw) is None


def test_names_differing_only_by_case_or_width_share_a_key() -> None:
    assert name_key("Admin") == name_key("admin") == name_key("\uff21\uff44\uff4d\uff49\uff4e")
    assert name_key("STRASSE") == name_key("straße")
    assert name_key("alice") != name_key("alicé")


def test_a_terminal_is_shown_control_characters_never_given_them() -> None:
    shown = terminal_safe("mallory\n2026-12-04 key_revoked admin\x1b[2K\u200b\x9b")
    assert shown == "mallory\\n2026-12-04 key_revoked admin\\x1b[2K\\u200b\\x9b"
    assert shown.isprintable()
    assert terminal_safe("Zoë on linux (x86_64)") == "Zoë on linux (x86_64)"
