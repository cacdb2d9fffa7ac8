"""The secrets audit (tests/support/secrets_audit.py) finds what it is meant to find.

Planted secrets, made up here and never handed out by devicelink (so the session's own
audit ignores them): the scanner must find them in a server's output, a log record, a
pg_dump and a SQLite file, in every form, and must not mistake keyed hashes or other
codes for them. Last, a whole pytest session that leaks fails.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from devicelink.core.apikeys import new_api_key
from devicelink.core.codes import CodeHasher, new_device_code, new_user_code
from tests.support.secret_scanner import (
    Scanner,
    SecretRegistry,
    audit_findings,
    candidate_files,
)
from tests.support.secrets_audit import RecordCollector

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def planted() -> dict[str, str]:
    return {
        "device_code": new_device_code(),
        "user_code": new_user_code(),
        "access_token": new_api_key(),
        "session_token": secrets.token_urlsafe(32),
    }


@pytest.fixture
def registry(planted: dict[str, str]) -> SecretRegistry:
    made = SecretRegistry()
    for kind, value in planted.items():
        assert made.add(kind, value)
    return made


def kinds_found(text: str, registry: SecretRegistry) -> set[tuple[str, str]]:
    return {(f.kind, f.form) for f in audit_findings([("planted", text)], registry)}


def test_it_finds_each_secret_in_a_json_log_line(
    planted: dict[str, str], registry: SecretRegistry
) -> None:
    for kind, value in planted.items():
        line = f'{{"event": "request", "path": "/x", "{kind}": "{value}", "level": "info"}}'
        (finding,) = audit_findings([("a log line", line)], registry)
        assert finding.where == "a log line"
        assert value not in finding.describe()  # the report does not repeat the secret


@pytest.mark.parametrize(
    ("shape", "form"),
    [
        (lambda code: code, "with the dash"),
        (lambda code: code.replace("-", ""), "without the dash"),
        (lambda code: code.lower(), "with the dash, in lower case"),
        (lambda code: code.replace("-", " ").lower(), "without the dash, in lower case"),
        (
            lambda code: f"user_code={code.replace('-', '').lower()}&x",
            "without the dash, in lower case",
        ),
    ],
)
def test_it_finds_a_user_code_however_it_is_typed(
    planted: dict[str, str], registry: SecretRegistry, shape: Callable[[str], str], form: str
) -> None:
    text = f"POST /oauth/device/verify typed {shape(planted['user_code'])} ok"
    assert kinds_found(text, registry) == {("user code", form)}


def test_it_finds_an_api_key_without_its_prefix(
    planted: dict[str, str], registry: SecretRegistry
) -> None:
    random_part = planted["access_token"].split("_")[1]
    assert kinds_found(f"key body {random_part}.", registry) == {("API key", "without its prefix")}


def test_it_finds_hex_forms_in_a_pg_dump(planted: dict[str, str], registry: SecretRegistry) -> None:
    dump = "\n".join(
        f"{i}\t\\x{value.encode().hex()}\t2026-11-29 12:00:00+00"
        for i, value in enumerate(planted.values())
    )
    dump += "\n9\t\\x" + planted["user_code"].replace("-", "").encode().hex() + "\n"
    found = kinds_found(dump, registry)
    assert ("device code", "hex") in found
    assert ("API key", "hex") in found
    assert ("session token", "hex") in found
    assert ("user code", "hex") in found
    assert ("user code", "hex, without the dash") in found


def test_it_finds_secrets_in_a_sqlite_file_and_a_server_log(
    tmp_path: Path, planted: dict[str, str], registry: SecretRegistry
) -> None:
    database = tmp_path / "planted" / "devicelink.db"
    database.parent.mkdir()
    with closing(sqlite3.connect(database)) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, code BLOB, note TEXT)")
        db.execute(
            "INSERT INTO t (code, note) VALUES (?, ?)",
            (planted["user_code"].replace("-", "").encode(), "x" * 100),
        )
        db.execute(
            "INSERT INTO t (code, note) VALUES (?, ?)", (b"\x00" * 32, planted["access_token"])
        )
        db.commit()
    log = tmp_path / "server-logs" / "serve-1.stderr"
    log.parent.mkdir()
    log.write_text(
        '{"event": "Started server process", "level": "info"}\n'
        f'{{"event": "poll", "device_code": "{planted["device_code"]}"}}\n'
    )
    (tmp_path / "unrelated.txt").write_text(planted["device_code"])  # not a place searched

    files = sorted(candidate_files(tmp_path))
    assert files == [database, log]
    scanner = Scanner(registry)
    found = {(f.kind, Path(f.where).name) for path in files for f in scanner.scan_file(path)}
    assert found == {
        ("user code", "devicelink.db"),
        ("API key", "devicelink.db"),
        ("device code", "serve-1.stderr"),
    }


def test_keyed_hashes_and_other_codes_are_not_findings(
    planted: dict[str, str], registry: SecretRegistry
) -> None:
    hasher = CodeHasher(secrets.token_bytes(32))
    stored = [
        hasher.device_code(planted["device_code"]),
        hasher.user_code(planted["user_code"].replace("-", "")),
        hasher.api_key(planted["access_token"]),
        hasher.session_token(planted["session_token"]),
        hmac.new(b"k" * 32, planted["device_code"].encode(), hashlib.sha256).digest(),
    ]
    text = "\n".join(
        [f"\\x{digest.hex()}" for digest in stored]
        + [digest.decode("latin-1") for digest in stored]
        + [new_device_code(), new_user_code(), new_api_key(), secrets.token_urlsafe(32)]
        + [planted["device_code"][:-1], planted["user_code"][:-1] + "-", "BCDF-GHJK"]
    )
    assert audit_findings([("hashes", text)], registry) == []


def test_made_up_codes_are_not_recorded() -> None:
    made = SecretRegistry()
    assert not made.add("device_code", "abc")  # a test's made-up code would match everywhere
    assert not made.add("user_code", "WDJB-MJH")
    assert not made.add("user_code", "AEIO-UAEI")
    assert not made.add("access_token", None)
    assert made.add("user_code", "wdjb mjht")
    assert made.values["user_code"] == {"WDJBMJHT"}


def test_log_records_reach_the_audit(planted: dict[str, str], registry: SecretRegistry) -> None:
    """The plugin's handler sees devicelink's records at every level, extras included."""
    collector = RecordCollector()
    logger = logging.getLogger("devicelink.planted")
    logger.addHandler(collector)
    try:
        logger.debug("debug %s", planted["device_code"])
        logger.info("done", extra={"user_code": planted["user_code"]})
        try:
            raise ValueError(planted["access_token"])
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(collector)
    found = {f.kind for f in audit_findings([("records", "\n".join(collector.texts))], registry)}
    assert found == {"device code", "user code", "API key"}


# --- a whole session ------------------------------------------------------------------------


INNER_TEST = """
import logging
from pathlib import Path

from tests.support.secret_scanner import REGISTRY

DEVICE_CODE = "{device_code}"


def test_handled_and_logged(tmp_path: Path) -> None:
    REGISTRY.add("device_code", DEVICE_CODE)
    if {leak_log}:
        logging.getLogger("devicelink.http").info("poll %s", DEVICE_CODE)
    if {leak_file}:
        (tmp_path / "serve.stderr").write_text("device_code=" + DEVICE_CODE)
"""


def inner_session(tmp_path: Path, *, leak: bool) -> subprocess.Popen[str]:
    """A pytest session of one test, with the plugin: it records a device code, then
    (``leak``) logs it and writes it to a server's output file."""
    project = tmp_path / "inner"
    project.mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "conftest.py").write_text('pytest_plugins = ["tests.support.secrets_audit"]\n')
    (project / "test_inner.py").write_text(
        textwrap.dedent(INNER_TEST).format(
            device_code=new_device_code(), leak_log=leak, leak_file=leak
        )
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'inner-tmp'}",
            str(project),
        ],
        cwd=project,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_a_session_that_leaks_fails_and_says_where(tmp_path: Path) -> None:
    sessions = {
        leak: inner_session(tmp_path / ("leaky" if leak else "clean"), leak=leak)
        for leak in (True, False)
    }
    leaky_output, _ = sessions[True].communicate(timeout=120)
    clean_output, _ = sessions[False].communicate(timeout=120)

    assert sessions[True].returncode == 1, leaky_output
    assert "1 passed" in leaky_output  # the test itself passed: the audit failed the session
    assert "secrets audit" in leaky_output
    assert "FAILED: 2 recorded secrets found in clear" in leaky_output
    assert "device code (as handed out) in the log records" in leaky_output
    assert "serve.stderr" in leaky_output

    assert sessions[False].returncode == 0, clean_output
    assert "no recorded secret was found in clear" in clean_output
