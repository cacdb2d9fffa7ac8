"""Write docs/rfc-clauses.md: each RFC clause the tests are marked with
(``@pytest.mark.rfc("8628", "3.5")``) and the tests that check it, and the tests of each
defect of the original system (``@pytest.mark.defect(3)``), from the markers.

    .venv/bin/python scripts/rfc_table.py           # rewrite the table
    .venv/bin/python scripts/rfc_table.py --check   # exit 1 if the table is stale

The suite runs the check (tests/test_rfc_table.py), so the table cannot drift from the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "docs" / "rfc-clauses.md"
TITLES = {
    "6749": "OAuth 2.0",
    "6750": "Bearer tokens",
    "7009": "Token revocation",
    "7636": "PKCE",
    "7662": "Token introspection",
    "8252": "OAuth for native apps",
    "8414": "Authorization server metadata",
    "8628": "Device authorization grant",
    "9207": "Issuer identification",
    "9700": "Security best current practice",
}


class _Markers:
    """A pytest plugin that records the rfc markers of every collected test."""

    def __init__(self) -> None:
        self.tests: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.defects: dict[int, set[str]] = defaultdict(set)

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            # Parametrized cases count once: the table names test functions.
            name = re.sub(r"\[.*\]$", "", item.nodeid)
            for mark in item.iter_markers("rfc"):
                rfc, section = (str(arg) for arg in mark.args)
                self.tests[(rfc, section)].add(name)
            for mark in item.iter_markers("defect"):
                self.defects[int(mark.args[0])].add(name)


def _section_key(clause: tuple[str, str]) -> tuple[int, list[int]]:
    rfc, section = clause
    return int(rfc), [int(part) for part in section.split(".") if part.isdigit()]


def render(tests: dict[tuple[str, str], set[str]], defects: dict[int, set[str]]) -> str:
    lines = [
        "# RFC clauses and the tests that check them",
        "",
        "Generated from the tests' `@pytest.mark.rfc(...)` markers by",
        "`scripts/rfc_table.py`; the suite fails when this file is stale.",
        "",
        "| RFC | section | tests |",
        "| --- | --- | --- |",
    ]
    for rfc, section in sorted(tests, key=_section_key):
        title = TITLES.get(rfc, "")
        lines.append(f"| {rfc} {title} | {section} | {len(tests[(rfc, section)])} |")
    for rfc, section in sorted(tests, key=_section_key):
        lines += ["", f"## RFC {rfc} section {section}", ""]
        lines += [f"- `{name}`" for name in sorted(tests[(rfc, section)])]
    lines += [
        "",
        "## The defects of the original system (DESIGN.md), each with its tests",
        "",
        "Marked `@pytest.mark.defect(N)`.",
    ]
    for number in sorted(defects):
        lines += ["", f"### Defect {number}", ""]
        lines += [f"- `{name}`" for name in sorted(defects[number])]
    return "\n".join(lines) + "\n"


def collect() -> _Markers:
    markers = _Markers()
    with contextlib.redirect_stdout(io.StringIO()) as listing:
        status = pytest.main(
            ["--collect-only", "-q", "-p", "no:cacheprovider", str(ROOT / "tests")],
            plugins=[markers],
        )
    if status != 0:
        print(listing.getvalue(), file=sys.stderr)
        raise SystemExit(f"collecting the tests failed (pytest exit {status})")
    return markers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the table is stale")
    args = parser.parse_args()
    markers = collect()
    text = render(markers.tests, markers.defects)
    if args.check:
        if not TABLE.exists() or TABLE.read_text() != text:
            print(f"{TABLE.relative_to(ROOT)} is stale: run scripts/rfc_table.py", file=sys.stderr)
            return 1
        return 0
    TABLE.write_text(text)
    print(f"wrote {TABLE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
