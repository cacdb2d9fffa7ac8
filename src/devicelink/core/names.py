"""What a name must be to name an account, and how names are shown on a terminal.

A name comes from an operator (``users add``), an upstream provider's claims or a host
application: it is NFKC-normalised, must be printable (no control characters, no
zero-width or other format characters, no line separators) and at most
:data:`NAME_LENGTH` characters long. Two names are the same account name when their
keys (:func:`name_key`: NFKC and case folding) are equal, so ``Admin`` and ``admin``, or
``admin`` in full-width letters, can never be two accounts.

Text from outside (names, a device's User-Agent, a client's name) may still reach a
terminal through older rows or other doors: :func:`terminal_safe` escapes what a
terminal would interpret, so no value can forge a row or move the cursor.
"""

from __future__ import annotations

import unicodedata

NAME_LENGTH = 200
"""The longest account name, in characters (the column holds 200)."""


def printable_name(raw: str) -> str | None:
    """``raw`` as an account or display name: NFKC-normalised and trimmed, or None when
    it is empty, longer than :data:`NAME_LENGTH` or holds a character that is not
    printable (``str.isprintable``: control, format such as the zero-width space,
    private-use, unassigned, and every separator but the space)."""
    name = unicodedata.normalize("NFKC", raw).strip()
    if not name or len(name) > NAME_LENGTH or not name.isprintable():
        return None
    return name


def name_key(name: str) -> str:
    """The key under which account names are unique: NFKC, case folding, NFKC again
    (case folding can undo a normalisation, as Unicode's NFKC_Casefold allows for)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def terminal_safe(text: str) -> str:
    """``text`` with every character that is not printable written as an escape
    (``\\n``, ``\\x1b``, ``\\u200b``): a terminal shows it, never obeys it."""
    if text.isprintable():
        return text
    # repr escapes exactly the characters str.isprintable refuses.
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
