"""API key format ``dlk_<random>_<checksum>`` (devicelink.core.apikeys).

The prefix lets secret scanners match leaked keys; the checksum (CRC32 of prefix and
random part, base62) rejects typos and probes before any database lookup.
"""

from __future__ import annotations

import math
import re
import string
import zlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from devicelink.core.apikeys import (
    API_KEY_LENGTH,
    API_KEY_PREFIX,
    is_well_formed_api_key,
    new_api_key,
)

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
KEY_SHAPE = re.compile(r"^dlk_([0-9A-Za-z]{43})_([0-9A-Za-z]{6})$")
TYPO_CHARACTERS = string.printable


def _base62(number: int, width: int) -> str:
    """The last ``width`` base62 digits of ``number``, most significant first."""
    return "".join(BASE62[number // 62**power % 62] for power in reversed(range(width)))


def _key_with_random_part(random_part: str) -> str:
    """A key built by hand from the documented format (CRC32 of the body, base62)."""
    body = "dlk_" + random_part
    return f"{body}_{_base62(zlib.crc32(body.encode('ascii')), 6)}"


# A fixed, valid key, so that failures are reproducible.
KEY = _key_with_random_part("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg")
# Keys drawn by hypothesis (rather than by new_api_key) so that failures replay.
keys = st.text(alphabet=BASE62, min_size=43, max_size=43).map(_key_with_random_part)


def test_fresh_keys_have_the_documented_shape() -> None:
    keys = [new_api_key() for _ in range(500)]
    for key in keys:
        assert KEY_SHAPE.match(key), key
        assert len(key) == API_KEY_LENGTH == 54
        assert key.startswith(API_KEY_PREFIX)
        assert API_KEY_PREFIX == "dlk_"
    assert len(set(keys)) == len(keys)


def test_random_part_carries_at_least_256_bits() -> None:
    match = KEY_SHAPE.match(new_api_key())
    assert match is not None
    assert len(match.group(1)) * math.log2(62) >= 256


def test_checksum_is_crc32_of_prefix_and_random_part_in_base62() -> None:
    # The documented format, so that scanners and clients can check keys offline.
    for _ in range(100):
        key = new_api_key()
        body, _, checksum = key.rpartition("_")
        assert checksum == _base62(zlib.crc32(body.encode("ascii")), 6)


def test_fresh_keys_are_well_formed() -> None:
    for _ in range(500):
        assert is_well_formed_api_key(new_api_key())


@settings(database=None)
@given(keys)
def test_any_key_in_the_documented_format_is_well_formed(key: str) -> None:
    assert is_well_formed_api_key(key) is True


# --- typos: any single change is caught -----------------------------------------------


@settings(database=None)
@given(
    key=keys,
    position=st.integers(min_value=0, max_value=API_KEY_LENGTH - 1),
    replacement=st.sampled_from(TYPO_CHARACTERS),
)
def test_any_single_character_substitution_is_rejected(
    key: str, position: int, replacement: str
) -> None:
    assume(key[position] != replacement)
    typo = key[:position] + replacement + key[position + 1 :]
    assert is_well_formed_api_key(typo) is False


@settings(database=None)
@given(key=keys, position=st.integers(min_value=0, max_value=API_KEY_LENGTH - 1))
def test_any_single_character_deletion_is_rejected(key: str, position: int) -> None:
    assert is_well_formed_api_key(key[:position] + key[position + 1 :]) is False


@settings(database=None)
@given(
    key=keys,
    position=st.integers(min_value=0, max_value=API_KEY_LENGTH),
    extra=st.sampled_from(TYPO_CHARACTERS),
)
def test_any_single_character_insertion_is_rejected(key: str, position: int, extra: str) -> None:
    assert is_well_formed_api_key(key[:position] + extra + key[position:]) is False


@settings(database=None)
@given(key=keys, position=st.integers(min_value=0, max_value=API_KEY_LENGTH - 2))
def test_any_swap_of_two_neighbouring_characters_is_rejected(key: str, position: int) -> None:
    assume(key[position] != key[position + 1])
    swapped = key[:position] + key[position + 1] + key[position] + key[position + 2 :]
    assert is_well_formed_api_key(swapped) is False


# --- other malformed input ------------------------------------------------------------


@pytest.mark.parametrize(
    "candidate",
    [
        pytest.param("", id="empty"),
        pytest.param("dlk_", id="prefix only"),
        pytest.param(KEY[:-1], id="last character missing"),
        pytest.param(KEY[: API_KEY_LENGTH // 2], id="truncated in half"),
        pytest.param(KEY[:-7], id="checksum missing"),
        pytest.param(KEY + "x", id="one character too many"),
        pytest.param(KEY + " ", id="trailing space"),
        pytest.param(KEY + "\n", id="trailing newline"),
        pytest.param(" " + KEY, id="leading space"),
        pytest.param(KEY + KEY, id="pasted twice"),
        pytest.param("DLK_" + KEY[4:], id="prefix in upper case"),
        pytest.param("ghp_" + KEY[4:], id="another product's prefix"),
        pytest.param("dlk-" + KEY[4:], id="dash instead of underscore after prefix"),
        pytest.param(KEY[:47] + "-" + KEY[48:], id="dash instead of separator"),
        pytest.param(KEY.swapcase(), id="case swapped"),
        pytest.param("dlk_" + "A" * 43 + "_" + "A" * 6, id="made-up checksum"),
    ],
)
def test_malformed_keys_are_rejected(candidate: str) -> None:
    assert is_well_formed_api_key(candidate) is False


@pytest.mark.parametrize(
    ("position", "replacement"),
    [
        pytest.param(0, "\u00e9", id="e acute in the prefix"),
        pytest.param(10, "\uff21", id="fullwidth A in the random part"),
        pytest.param(API_KEY_LENGTH - 7, "\u0661", id="arabic-indic digit as the separator"),
        pytest.param(API_KEY_LENGTH - 3, "\u00e9", id="e acute in the checksum"),
        pytest.param(API_KEY_LENGTH - 1, "\U0001f511", id="emoji as last checksum character"),
    ],
)
def test_non_ascii_characters_are_rejected_without_raising(position: int, replacement: str) -> None:
    # Same length as a key, so only the character checks can reject it; a bearer
    # header may carry any latin-1 byte, so this must be False, never an exception.
    candidate = KEY[:position] + replacement + KEY[position + 1 :]
    assert len(candidate) == API_KEY_LENGTH
    assert is_well_formed_api_key(candidate) is False
