"""User codes, device codes and keyed hashes (devicelink.core.codes).

RFC 8628 section 6.1 (user codes a person can type), section 5.2 (device codes that
cannot be guessed), and DESIGN.md defects 2 (secrets stored in clear) and 5 (user
codes with vowels and digits, case-sensitive, no dash tolerance).
"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devicelink.core.codes import (
    USER_CODE_ALPHABET,
    CodeHasher,
    format_user_code,
    new_device_code,
    new_user_code,
    normalise_user_code,
)

RFC_6_1_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
DISPLAY_FORM = re.compile(rf"^[{RFC_6_1_ALPHABET}]{{4}}-[{RFC_6_1_ALPHABET}]{{4}}$")
SECRET = b"s" * 32
OTHER_SECRET = b"t" * 32

user_code_letters = st.text(alphabet=RFC_6_1_ALPHABET, min_size=8, max_size=8)


# --- generating user codes -------------------------------------------------------------


@pytest.mark.rfc("8628", "6.1")
@pytest.mark.defect(5)
def test_alphabet_is_the_base_20_alphabet_without_vowels_or_digits() -> None:
    assert USER_CODE_ALPHABET == RFC_6_1_ALPHABET
    assert not set(USER_CODE_ALPHABET) & set("AEIOUY0123456789")


@pytest.mark.rfc("8628", "6.1")
@pytest.mark.defect(5)
def test_new_user_codes_are_eight_letters_shown_as_xxxx_dash_xxxx() -> None:
    codes = [new_user_code() for _ in range(500)]
    for code in codes:
        assert DISPLAY_FORM.match(code), code
    assert len(set(codes)) == len(codes)


@pytest.mark.rfc("8628", "6.1")
def test_new_user_codes_use_the_whole_alphabet() -> None:
    # 16,000 letters: the chance that a fair generator misses one of 20 letters is ~0.
    letters = "".join(new_user_code().replace("-", "") for _ in range(2000))
    assert set(letters) == set(RFC_6_1_ALPHABET)


@pytest.mark.rfc("8628", "6.1")
def test_a_new_user_code_normalises_to_its_letters_and_formats_back() -> None:
    code = new_user_code()
    normalised = normalise_user_code(code)
    assert normalised == code.replace("-", "")
    assert format_user_code(normalised) == code


# --- normalising what a user typed -----------------------------------------------------


@pytest.mark.rfc("8628", "6.1")
@pytest.mark.defect(5)
@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("WDJB-MJHT", id="as displayed"),
        pytest.param("wdjb-mjht", id="lower case"),
        pytest.param("WdJb-mJhT", id="mixed case"),
        pytest.param("WDJBMJHT", id="no dash"),
        pytest.param("wdjbmjht", id="lower case no dash"),
        pytest.param("WDJB MJHT", id="space instead of dash"),
        pytest.param("  wdjb-mjht  ", id="surrounding spaces"),
        pytest.param("W D J B M J H T", id="spaces between every letter"),
        pytest.param("WDJB - MJHT", id="dash with spaces"),
        pytest.param("WDJB\tMJHT", id="tab"),
        pytest.param("WDJB\u2013MJHT", id="en dash from a word processor"),
        pytest.param("WDJB\u2011MJHT", id="non-breaking hyphen"),
    ],
)
def test_normalise_accepts_the_ways_people_type_a_code(typed: str) -> None:
    assert normalise_user_code(typed) == "WDJBMJHT"


@pytest.mark.rfc("8628", "6.1")
@pytest.mark.defect(5)
@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("WDJA-MJHT", id="vowel A"),
        pytest.param("WDJE-MJHT", id="vowel E"),
        pytest.param("wdji-mjht", id="vowel i lower case"),
        pytest.param("WDJO-MJHT", id="vowel O"),
        pytest.param("WDJU-MJHT", id="vowel U"),
        pytest.param("WDJY-MJHT", id="Y is not in the alphabet"),
        pytest.param("WDJ0-MJHT", id="digit zero"),
        pytest.param("WDJ1-MJHT", id="digit one"),
        pytest.param("WDJB-MJH", id="seven letters"),
        pytest.param("WDJB-MJHTB", id="nine letters"),
        pytest.param("WDJBMJHTWDJBMJHT", id="two codes"),
        pytest.param("", id="empty"),
        pytest.param("----", id="only dashes"),
        pytest.param("WDJB/MJHT", id="slash is not a separator"),
        pytest.param("WDJB-MJHT\n", id="newline"),
        pytest.param("\uff37\uff24\uff2a\uff22-\uff2d\uff2a\uff28\uff34", id="fullwidth letters"),
        pytest.param("WDJB-MJHT" + " " * 1000, id="overlong padding"),
        pytest.param("-" * 100_000 + "WDJBMJHT", id="huge input"),
    ],
)
def test_normalise_rejects_what_cannot_be_a_code(typed: str) -> None:
    assert normalise_user_code(typed) is None


@pytest.mark.rfc("8628", "6.1")
@pytest.mark.defect(5)
@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("WDJB-MJ\u00df", id="sharp s upper-cases to SS"),
        pytest.param("WDJB-MJH\u017f", id="long s upper-cases to S"),
        pytest.param("WDJB-MJ\ufb00", id="ff ligature upper-cases to FF"),
    ],
)
def test_normalise_rejects_non_ascii_letters_that_upper_case_into_the_alphabet(
    typed: str,
) -> None:
    # A letter outside the alphabet is a typo and must make the input invalid (see the
    # docstring of normalise_user_code); str.upper() must not turn it into code letters.
    assert normalise_user_code(typed) is None


@st.composite
def typed_variants(draw: st.DrawFn) -> tuple[str, str]:
    """A code, and one way a person might type it: any case, dash or not, stray spaces."""
    letters = draw(user_code_letters)
    chars = [ch.lower() if draw(st.booleans()) else ch for ch in letters]
    if draw(st.booleans()):
        chars.insert(4, "-")
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        chars.insert(draw(st.integers(min_value=0, max_value=len(chars))), " ")
    return letters, "".join(chars)


@pytest.mark.rfc("8628", "6.1")
@pytest.mark.defect(5)
@settings(database=None)
@given(typed_variants())
def test_every_way_of_typing_a_code_normalises_to_the_same_code(
    variant: tuple[str, str],
) -> None:
    letters, typed = variant
    assert normalise_user_code(typed) == letters
    assert normalise_user_code(format_user_code(letters)) == letters


@pytest.mark.rfc("8628", "6.1")
@settings(database=None)
@given(st.text(max_size=80))
def test_arbitrary_input_never_normalises_outside_the_alphabet(typed: str) -> None:
    normalised = normalise_user_code(typed)
    if normalised is not None:
        assert len(normalised) == 8
        assert set(normalised) <= set(RFC_6_1_ALPHABET)


# --- device codes ----------------------------------------------------------------------


def _decoded(device_code: str) -> bytes:
    return base64.urlsafe_b64decode(device_code + "=" * (-len(device_code) % 4))


@pytest.mark.rfc("8628", "5.2")
def test_device_codes_carry_at_least_256_random_bits_and_are_url_safe() -> None:
    codes = [new_device_code() for _ in range(1000)]
    for code in codes:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", code), code
        assert len(_decoded(code)) * 8 >= 256
    assert len(set(codes)) == len(codes)


@pytest.mark.rfc("8628", "5.2")
def test_device_codes_vary_in_every_byte_position() -> None:
    # A generator padding a short random value with constants would keep some
    # positions fixed; 200 samples of a truly random byte agree by chance ~never.
    decoded = [_decoded(new_device_code()) for _ in range(200)]
    width = min(len(d) for d in decoded)
    assert width >= 32
    for position in range(32):
        assert len({d[position] for d in decoded}) > 1, position


# --- keyed hashes ----------------------------------------------------------------------

PURPOSES = ("device_code", "user_code", "api_key", "client_secret")


def _hash(hasher: CodeHasher, purpose: str, value: str) -> bytes:
    return getattr(hasher, purpose)(value)  # type: ignore[no-any-return]


@pytest.mark.parametrize("purpose", PURPOSES)
def test_hash_is_deterministic_for_the_same_secret(purpose: str) -> None:
    one, two = CodeHasher(SECRET), CodeHasher(SECRET)
    assert _hash(one, purpose, "WDJBMJHT") == _hash(two, purpose, "WDJBMJHT")


@pytest.mark.parametrize("purpose", PURPOSES)
def test_hash_depends_on_the_secret(purpose: str) -> None:
    assert _hash(CodeHasher(SECRET), purpose, "WDJBMJHT") != _hash(
        CodeHasher(OTHER_SECRET), purpose, "WDJBMJHT"
    )


@pytest.mark.parametrize("purpose", PURPOSES)
def test_hash_depends_on_the_value(purpose: str) -> None:
    hasher = CodeHasher(SECRET)
    assert _hash(hasher, purpose, "WDJBMJHT") != _hash(hasher, purpose, "WDJBMJHV")


@settings(database=None)
@given(st.text(max_size=100))
def test_the_same_value_hashes_differently_for_each_purpose(value: str) -> None:
    hasher = CodeHasher(SECRET)
    hashes = {_hash(hasher, purpose, value) for purpose in PURPOSES}
    assert len(hashes) == len(PURPOSES)


@pytest.mark.defect(2)
@pytest.mark.parametrize("purpose", PURPOSES)
def test_hash_never_contains_the_clear_value(purpose: str) -> None:
    value = new_device_code()
    digest = _hash(CodeHasher(SECRET), purpose, value)
    assert len(digest) == 32  # SHA-256
    assert value.encode() not in digest
    assert value not in digest.hex()
    assert value not in base64.b64encode(digest).decode()


@pytest.mark.defect(2)
@pytest.mark.parametrize("purpose", PURPOSES)
def test_hash_is_keyed_not_a_plain_digest(purpose: str) -> None:
    # Without the server secret nobody can recompute it from a guessed code.
    value = "WDJBMJHT"
    digest = _hash(CodeHasher(SECRET), purpose, value)
    assert digest != hashlib.sha256(value.encode()).digest()
    assert digest != hashlib.sha256(SECRET + value.encode()).digest()


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"short", id="five bytes"),
        pytest.param(b"x" * 31, id="31 bytes"),
    ],
)
def test_short_secrets_are_refused(secret: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        CodeHasher(secret)


def test_a_32_byte_secret_is_enough() -> None:
    assert len(CodeHasher(b"x" * 32).device_code("abc")) == 32


@pytest.mark.parametrize("source", ["new_user_code", "new_codes"])
def test_every_letter_of_a_user_code_is_equally_likely(source: str) -> None:
    """No modulo bias: over 160,000 letters, each of the 20 comes up about 8,000 times
    (chi-squared with 19 degrees of freedom under 60: a fair source fails about once
    in a quarter of a million runs; the bias of ``byte % 20`` would give about 150)."""
    from collections import Counter

    from devicelink.core import codes

    def user_code() -> str:
        return codes.new_user_code() if source == "new_user_code" else codes.new_codes()[1]

    counts = Counter("".join(user_code().replace("-", "") for _ in range(20_000)))
    expected = 20_000 * 8 / len(codes.USER_CODE_ALPHABET)
    alphabet = codes.USER_CODE_ALPHABET
    chi2 = sum((counts[letter] - expected) ** 2 / expected for letter in alphabet)
    assert set(counts) == set(alphabet)
    assert chi2 < 60, counts


@pytest.mark.rfc("8628", "5.2")
def test_new_codes_give_a_256_bit_device_code_and_a_user_code_each_time() -> None:
    from devicelink.core.codes import new_codes

    pairs = [new_codes() for _ in range(2000)]
    for device_code, user_code in pairs:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", device_code)
        assert len(base64.urlsafe_b64decode(device_code + "=")) == 32
        assert normalise_user_code(user_code) == user_code.replace("-", "")
    assert len({d for d, _ in pairs}) == 2000
