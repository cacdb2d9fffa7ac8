"""The README is part of the product: its configuration table must not drift."""

from __future__ import annotations

from pathlib import Path

from devicelink.runtime.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme() -> None:
    missing = [
        f"DEVICELINK_{name.upper()}"
        for name in Settings.model_fields
        if f"DEVICELINK_{name.upper()}" not in README
        and not (name.startswith("oidc_") and "DEVICELINK_OIDC_ISSUER" in README)
    ]
    assert missing == []


def test_readme_gives_the_two_setup_commands() -> None:
    assert "./scripts/serve" in README
    assert "./scripts/test" in README
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "./scripts/test" in ci
