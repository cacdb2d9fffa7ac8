"""Which presented keys are worth a database lookup (devicelink.core.apikeys.worth_a_lookup):
devicelink's ``dlk_`` keys by their checksum, an embedding application's keys by the
shape its issuer declares, or by the documented default (issue 17: host keys were
refused before any lookup)."""

from __future__ import annotations

import pytest

from devicelink.core.apikeys import (
    DEVICELINK_KEYS,
    HOST_KEY_MAX_LENGTH,
    KeyShape,
    is_plausible_host_key,
    new_api_key,
    worth_a_lookup,
)
from devicelink.core.errors import KeyIssueRefused
from devicelink.service.issuing import StoredKeyIssuer

HOST_KEY = "acme_" + "A1b2C3d4E5f6G7h8J9k0"
DLK_KEY = new_api_key()
TYPO = DLK_KEY[:-1] + ("A" if DLK_KEY[-1] != "A" else "B")


class PrefixIssuer:
    key_prefix = "acme_"


class CheckingIssuer:
    def is_well_formed(self, presented: str) -> bool:
        return presented.startswith("acme_") and presented[5:].isalnum()


class PlainIssuer:
    """Declares nothing: the default check applies."""


@pytest.mark.parametrize(
    ("presented", "shape", "worth"),
    [
        # dlk_ keys: the checksum decides, whatever the issuer declares
        (DLK_KEY, None, True),
        (DLK_KEY, KeyShape(prefix="acme_"), True),
        (TYPO, None, False),
        (TYPO, KeyShape(check=lambda _: True), False),
        # devicelink's own issuer: nothing but dlk_ keys
        (HOST_KEY, DEVICELINK_KEYS, False),
        # the default for host keys: printable ASCII, 16 to 512 characters, no whitespace
        (HOST_KEY, None, True),
        ("short_key", None, False),
        ("x" * HOST_KEY_MAX_LENGTH, None, True),
        ("x" * (HOST_KEY_MAX_LENGTH + 1), None, False),
        ("acme_ with a space inside", None, False),
        ("acme_\tA1b2C3d4E5f6G7h8", None, False),
        ("acme_é1b2C3d4E5f6G7h8J9", None, False),
        # a declared prefix is required on top of the default
        (HOST_KEY, KeyShape(prefix="acme_"), True),
        ("other_A1b2C3d4E5f6G7h8J9k0", KeyShape(prefix="acme_"), False),
        ("acme_ with a space inside", KeyShape(prefix="acme_"), False),
        # a declared check replaces the default
        ("acme_short", KeyShape(check=lambda key: key.startswith("acme_")), True),
        (HOST_KEY, KeyShape(check=lambda _: False), False),
    ],
)
def test_worth_a_lookup(presented: str, shape: KeyShape | None, worth: bool) -> None:
    assert worth_a_lookup(presented, shape) is worth


def test_an_issuer_declares_its_shape_by_name() -> None:
    assert KeyShape.of(PrefixIssuer()) == KeyShape(prefix="acme_")
    checking = KeyShape.of(CheckingIssuer())
    assert checking.check is not None
    assert worth_a_lookup("acme_short", checking)
    assert not worth_a_lookup("acme_not ok", checking)
    assert KeyShape.of(PlainIssuer()) == KeyShape()
    assert KeyShape.of(StoredKeyIssuer()) == DEVICELINK_KEYS


def test_the_default_host_key_check_is_documented() -> None:
    assert is_plausible_host_key("a" * 16)
    assert not is_plausible_host_key("a" * 15)
    assert not is_plausible_host_key("a" * 15 + " ")


def test_a_refusal_reason_is_kept_short_and_wire_safe() -> None:
    refusal = KeyIssueRefused('Your plan "Free" allows\n3 devices — upgrade at \\acme')
    assert refusal.reason == 'Your plan "Free" allows 3 devices — upgrade at \\acme'
    assert refusal.description == "Your plan ?Free? allows 3 devices ? upgrade at ?acme"
    assert len(KeyIssueRefused("x" * 1000).reason) == 300
    assert KeyIssueRefused("   ").reason  # never empty
