"""Which clients share a per-address rate limit.

An IPv6 host usually holds a whole /64 and picks any address in it, so counting each
address apart would give one client 2^64 budgets (RFC 8628 section 5.1 asks for limits that
hold). IPv6 clients are counted per prefix; IPv4 clients per address.
"""

from __future__ import annotations

import ipaddress

UNKNOWN = "-"


def limit_subject(ip: str | None, ipv6_prefix: int = 64) -> str:
    """The name under which ``ip`` is counted: the address itself for IPv4 (and for an
    IPv4 address mapped into IPv6), its ``/ipv6_prefix`` network for IPv6, ``-`` when
    unknown or unreadable."""
    if not ip:
        return UNKNOWN
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return UNKNOWN
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
    return str(address)
