"""Per-address limits count an IPv6 client per prefix (issue 13, item 3)."""

from __future__ import annotations

import pytest

from devicelink.core.addresses import limit_subject


@pytest.mark.parametrize(
    ("ip", "prefix", "subject"),
    [
        ("192.0.2.7", 64, "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", 64, "2001:db8:1:3::/64"),
        ("2001:db8:1:2:aaaa::1", 56, "2001:db8:1::/56"),
        ("2001:db8::1", 128, "2001:db8::1/128"),
        ("::ffff:192.0.2.7", 64, "192.0.2.7"),
        (None, 64, "-"),
        ("testclient", 64, "-"),
    ],
)
@pytest.mark.rfc("8628", "5.1")
def test_which_clients_share_a_per_address_limit(ip: str | None, prefix: int, subject: str) -> None:
    assert limit_subject(ip, prefix) == subject
