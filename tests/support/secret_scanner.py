"""What the secrets audit searches for, and the search: the device codes, user codes, API
keys, session tokens, authorization codes and PKCE verifiers handed out during the test
session (:data:`REGISTRY`), found in any text in every form they could take there (user
codes in any case with or without the dash, API keys also without their prefix, the hex
of each, as pg_dump and sqlite3 show binary columns). The plugin is tests/support/secrets_audit.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
MIN_TOKEN_LENGTH = 32
"""Device codes (43), API keys (54), session tokens and authorization codes (43) and PKCE
verifiers (43 to 128) are longer; anything shorter
handed out under those names is made up by a test (and would match everywhere)."""

KIND_NAMES = {
    "device_code": "device code",
    "user_code": "user code",
    "access_token": "API key",
    "session_token": "session token",
    "upstream_secret": "upstream sign-in secret",
    "authorization_code": "authorization code",
    "code_verifier": "PKCE verifier",
}

# RFC 7636 section 4.1: a PKCE verifier may also hold "." and "~".
_TOKEN = re.compile(r"^[A-Za-z0-9_\-.~]+$")
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_\-.~]{16,}")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")
_USER_RUN = re.compile(
    rf"[{USER_CODE_ALPHABET}](?:[ \-]?[{USER_CODE_ALPHABET}]){{{USER_CODE_LENGTH - 1},}}",
    re.IGNORECASE,
)
_SEPARATORS = re.compile(r"[ \-]")
SQLITE_PATTERNS = ("*.db", "*.db-wal", "*.db-journal", "*.sqlite", "*.sqlite3")
OUTPUT_PATTERNS = ("*.stderr", "*.stdout")


# --- what the tests handled ----------------------------------------------------------------


def normalise_user_code(value: str) -> str | None:
    letters = _SEPARATORS.sub("", value).upper()
    if len(letters) == USER_CODE_LENGTH and all(ch in USER_CODE_ALPHABET for ch in letters):
        return letters
    return None


class SecretRegistry:
    """The secrets handed out during the session, by kind."""

    def __init__(self) -> None:
        self.values: dict[str, set[str]] = {kind: set() for kind in KIND_NAMES}

    def add(self, kind: str, value: object) -> bool:
        """Record ``value``; False (and nothing recorded) when it cannot be a real one."""
        if kind not in self.values or not isinstance(value, str):
            return False
        if kind == "user_code":
            normalised = normalise_user_code(value)
            if normalised is None:
                return False
            self.values[kind].add(normalised)
            return True
        if len(value) < MIN_TOKEN_LENGTH or len(value) > 4096 or not _TOKEN.match(value):
            return False
        self.values[kind].add(value)
        return True

    def counts(self) -> dict[str, int]:
        return {kind: len(values) for kind, values in self.values.items()}

    def __len__(self) -> int:
        return sum(len(values) for values in self.values.values())


REGISTRY = SecretRegistry()


def record_secrets(body: object) -> None:
    """Record the secrets in a JSON answer of devicelink (device authorization, token)."""
    if isinstance(body, Mapping):
        for kind in ("device_code", "user_code", "access_token"):
            if kind in body:
                REGISTRY.add(kind, body[kind])


# --- the scanner ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    kind: str
    """device code, user code, API key, session token"""
    form: str
    """how it appeared: as handed out, without the dash, in hex, ..."""
    where: str
    excerpt: str
    """the text around it, the secret itself cut short"""

    def describe(self) -> str:
        return f"{self.kind} ({self.form}) in {self.where}: …{self.excerpt}…"


class Scanner:
    """Searches text for the secrets of a registry, in every form they could take."""

    def __init__(self, registry: SecretRegistry) -> None:
        self._tokens: dict[int, dict[str, tuple[str, str]]] = {}
        self._hex: dict[int, dict[str, tuple[str, str]]] = {}
        self._user_codes: set[str] = set()
        for kind, values in registry.values.items():
            name = KIND_NAMES[kind]
            for value in values:
                if kind == "user_code":
                    self._user_codes.add(value)
                    shown = f"{value[:4]}-{value[4:]}"
                    self._add(self._hex, value.encode().hex(), name, "hex, without the dash")
                    self._add(self._hex, shown.encode().hex(), name, "hex")
                    continue
                self._add(self._tokens, value, name, "as handed out")
                self._add(self._hex, value.encode().hex(), name, "hex")
                prefix, sep, rest = value.partition("_")
                if sep and prefix == "dlk":  # dlk_<random>_<checksum>: the random part
                    self._add(self._tokens, rest.partition("_")[0], name, "without its prefix")

    @staticmethod
    def _add(
        table: dict[int, dict[str, tuple[str, str]]], needle: str, kind: str, form: str
    ) -> None:
        if len(needle) >= 16:
            table.setdefault(len(needle), {})[needle] = (kind, form)

    @property
    def empty(self) -> bool:
        return not (self._tokens or self._user_codes)

    def scan_text(self, text: str, where: str) -> list[Finding]:
        findings: list[Finding] = []
        if self._tokens:
            findings += self._windows(text, _TOKEN_RUN, self._tokens, where, lower=False)
        if self._hex:
            findings += self._windows(text, _HEX_RUN, self._hex, where, lower=True)
        if self._user_codes:
            for match in _USER_RUN.finditer(text):
                letters = _SEPARATORS.sub("", match.group(0)).upper()
                for offset in range(len(letters) - USER_CODE_LENGTH + 1):
                    code = letters[offset : offset + USER_CODE_LENGTH]
                    if code in self._user_codes:
                        findings.append(self._user_code_finding(text, match, code, where))
                        break
        return findings

    def _user_code_finding(self, text: str, run: re.Match[str], code: str, where: str) -> Finding:
        exact = re.compile("[ \\-]?".join(code), re.IGNORECASE)
        found = exact.search(text, run.start(), run.end())
        assert found is not None
        typed = found.group(0)
        form = "with the dash" if "-" in typed else "without the dash"
        if typed != typed.upper():
            form += ", in lower case"
        return self._finding(text, found, "user code", form, where)

    def _windows(
        self,
        text: str,
        run_pattern: re.Pattern[str],
        table: dict[int, dict[str, tuple[str, str]]],
        where: str,
        *,
        lower: bool,
    ) -> list[Finding]:
        findings = []
        lengths = sorted(table, reverse=True)  # the longest first: a key before its body
        for match in run_pattern.finditer(text):
            run = match.group(0).lower() if lower else match.group(0)
            hit = None
            for length in lengths:
                needles = table[length]
                for offset in range(len(run) - length + 1):
                    hit = needles.get(run[offset : offset + length])
                    if hit is not None:
                        break
                if hit is not None:
                    findings.append(self._finding(text, match, hit[0], hit[1], where))
                    break  # one finding per run
        return findings

    @staticmethod
    def _finding(text: str, match: re.Match[str], kind: str, form: str, where: str) -> Finding:
        start, end = match.span()
        secret = text[start:end]
        shown = secret[:6] + "…" if len(secret) > 8 else secret[:4] + "…"
        excerpt = text[max(0, start - 50) : start] + shown + text[end : end + 30]
        return Finding(kind, form, where, excerpt.replace("\n", "⏎").replace("\x00", "·"))

    def scan_bytes(self, data: bytes, where: str) -> list[Finding]:
        """Binary content (a SQLite file): each byte as one character, so text in clear
        appears as itself whatever surrounds it."""
        return self.scan_text(data.decode("latin-1"), where)

    def scan_file(self, path: Path) -> list[Finding]:
        try:
            data = path.read_bytes()
        except OSError:
            return []
        return self.scan_bytes(data, str(path))


def candidate_files(root: Path) -> Iterator[Path]:
    """Server output and SQLite files under ``root``."""
    for pattern in (*OUTPUT_PATTERNS, *SQLITE_PATTERNS):
        yield from (path for path in root.rglob(pattern) if path.is_file())


def audit_findings(texts: Iterable[tuple[str, str]], registry: SecretRegistry) -> list[Finding]:
    """Scan ``(where, text)`` pairs for the secrets of ``registry`` (for tests)."""
    scanner = Scanner(registry)
    return [finding for where, text in texts for finding in scanner.scan_text(text, where)]
