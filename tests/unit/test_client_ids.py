"""RFC 6749 appendix A.1: ``client-id = *VSCHAR``, VSCHAR being %x20-7E. Every other
character (control characters, DEL, anything beyond ASCII) makes a client id that no
client can have, answered without a lookup; stored ids are at most 128 characters."""

from __future__ import annotations

from devicelink.service.clients import is_client_id


def test_a_character_is_a_client_id_character_exactly_when_it_is_a_vschar() -> None:
    wrong = [
        code
        for code in range(0x110000)
        if is_client_id(f"cli{chr(code)}") is not (0x20 <= code <= 0x7E)
    ]
    assert wrong == []


def test_length_is_one_to_128() -> None:
    assert not is_client_id("")
    assert is_client_id("a" * 128)
    assert not is_client_id("a" * 129)
