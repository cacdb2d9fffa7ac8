"""docs/rfc-clauses.md is generated from the tests' markers: it may not fall behind them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_table_of_rfc_clauses_matches_the_markers() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "rfc_table.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
