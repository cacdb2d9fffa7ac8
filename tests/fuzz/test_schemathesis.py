"""Fuzzing every machine endpoint against the server's own OpenAPI schema (schemathesis).

A real ``devicelink serve`` runs on a free loopback port, once on its embedded SQLite
database and once on a PostgreSQL database created for the run (where the token poll and
the key check take the thin asyncpg route). Schemathesis takes the schema the server
serves at ``/openapi.json`` and, for every operation in it (metadata, device
authorization, both token endpoints, the authorization endpoint of same-device sign-in,
revocation, introspection, /api/me, /api/keys,
DELETE /api/keys/{key_id}, /healthz, /readyz, /metrics), generates requests that follow
the schema and requests that break it (its coverage and fuzzing phases, positive and
negative), sends them to the server and checks every answer:

- ``not_a_server_error``: no 5xx;
- ``status_code_conformance``: only the statuses the schema documents;
- ``content_type_conformance``, ``response_schema_conformance``,
  ``response_headers_conformance``: the documented media type, JSON shape and headers
  (``Cache-Control: no-store``, ``WWW-Authenticate`` on 401, ``Retry-After`` on 429/503);
- ``ignored_auth``: an operation that requires a key or client credentials refuses a
  request without them, or with wrong ones;
- :func:`rfc6749_error_body`: every 4xx/5xx is RFC 6749 section 5.2 JSON: an object with
  a string ``error``, never a ``detail`` key, never status 422;
- :func:`authorization_answers_stay_home`: the authorization endpoint redirects only to
  this server's sign-in or a registered loopback redirect URI, and its errors are pages
  (the one operation whose 4xx are not section 5.2 JSON);
- :func:`echoes_request_id`: every answer carries ``X-Request-ID``.

The schema is built from the application code in this process when pytest collects the
tests (schemathesis needs it then; its lazy ``schemathesis.pytest.from_fixture`` loader
does not run on pytest 9.2, it sets ``Node._nodeid``, which pytest 9.2 no longer has), and
:func:`test_the_fuzzed_schema_is_the_one_the_server_serves` checks that it is exactly what
the running server answers at ``/openapi.json``.

The harness holds a real API key (a user approved through the service layer, as
tests/e2e does, then the token endpoint polled), so the bearer endpoints are exercised
past authentication, and a confidential client's credentials for introspection. When a
generated ``DELETE /api/keys/{key_id}`` revokes the harness's own key, a new one is
minted. Starting flows is limited to 30 a minute per address in production; the server
runs with ``DEVICELINK_START_RATE_LIMIT=1000000/minute`` here (the schema documents 429).
Random codes and keys only ever reach error answers, so
:func:`test_the_answers_of_a_whole_flow_match_the_schema` also walks one whole flow by hand
(pending, slow_down, the key, /api/me, introspection, DELETE, revocation, 413), every
answer checked the same way. Afterwards the server's own access log is read back: the
terminal summary gives the requests it answered, by status and by operation, and the run
fails if any was a 5xx or if the server logged an error.

Running it:

- In CI (``pytest`` or ``pytest tests/fuzz``): ``max_examples`` 25 per operation in the
  fuzzing phase (the coverage phase adds its own fixed cases) and a fixed seed: about 400
  requests and 20 seconds per backend.
- A dedicated long run: ``scripts/fuzz`` (``DEVICELINK_FUZZ_EXAMPLES``, default 500, and a
  fresh random seed: over 4,000 requests per backend, about 5 minutes for both), or
  directly ``DEVICELINK_FUZZ_EXAMPLES=500 .venv/bin/pytest tests/fuzz``.
  ``DEVICELINK_FUZZ_BACKENDS=sqlite`` (or ``postgres``) fuzzes one backend only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import os
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devicelink.runtime.settings import Settings
from devicelink.server.app import create_app
from tests.support.accounts import approve_through_service, open_sessions
from tests.support.databases import fresh_postgres_database
from tests.support.http import DEVICE_CODE_GRANT, token_form
from tests.support.processes import clean_env, free_port, run_devicelink
from tests.support.servers import ServerProcess, launcher

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("DEVICELINK_FUZZ_EXAMPLES", "25"))
"""Examples per operation in the fuzzing phase; 25 keeps the CI run short."""
LONG_RUN = "DEVICELINK_FUZZ_EXAMPLES" in os.environ
BACKENDS = os.environ.get("DEVICELINK_FUZZ_BACKENDS", "sqlite,postgres").split(",")
PUBLIC_CLIENT = "devicelink-cli"
AUTHORIZE = "/oauth/authorize"
RESOURCE_CLIENT = "fuzz-resource-server"
FUZZ_USER = "fuzzer"


# --- checks ------------------------------------------------------------------------------


def rfc6749_error_body(ctx: CheckContext, response: schemathesis.Response, case: Any) -> None:
    """Every error answer is RFC 6749 section 5.2 JSON: never 422, never ``detail``
    (but the browser's authorization endpoint's, which are pages:
    :func:`authorization_answers_stay_home`)."""
    if response.status_code < 400 or _the_authorization_page(case):
        return None
    assert response.status_code != 422, "a 422: errors are RFC 6749 section 5.2, status 400"
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.split(";")[0].strip() == "application/json", (
        f"error answered as {content_type!r}, not RFC 6749 section 5.2 JSON"
    )
    body = response.json()
    assert isinstance(body, dict), f"the error body is not a JSON object: {body!r}"
    assert "detail" not in body, f"a FastAPI-style 'detail' error body: {body!r}"
    assert isinstance(body.get("error"), str), f"no string 'error': {body!r}"
    assert body["error"], f"an empty 'error': {body!r}"
    description = body.get("error_description")
    assert description is None or isinstance(description, str), body
    return None


def authorization_answers_stay_home(
    ctx: CheckContext, response: schemathesis.Response, case: Any
) -> None:
    """The authorization endpoint never redirects anywhere but to this server's sign-in
    or to a registered loopback redirect URI (RFC 6749 section 4.1.2.1: an unknown client
    or redirect URI is an error page, never a redirect), and its errors are pages."""
    if not _the_authorization_page(case):
        return None
    if response.status_code == 303:
        location = response.headers["location"][0]
        assert location.startswith("/login?next=") or re.match(
            r"^http://(127\.0\.0\.1|\[::1\])(:\d+)?/callback\?", location
        ), f"a redirect away from home: {location!r}"
    else:
        assert "location" not in response.headers, response.headers
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("text/html"), content_type
    return None


def _the_authorization_page(case: Any) -> bool:
    """A browser's GET of the authorization endpoint (another method is a machine's
    mistake, answered 405 in section 5.2 JSON like any other)."""
    return bool(case.operation.path == AUTHORIZE and case.method.upper() == "GET")


def echoes_request_id(ctx: CheckContext, response: schemathesis.Response, case: Any) -> None:
    """Every answer carries ``X-Request-ID`` (the caller's, or a new one)."""
    assert response.headers.get("x-request-id"), "no X-Request-ID on the answer"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
    rfc6749_error_body,
    authorization_answers_stay_home,
    echoes_request_id,
]


# --- the server under test -----------------------------------------------------------------


@dataclass
class FuzzTarget:
    """A running server, and the credentials the harness holds for it."""

    backend: str
    server: ServerProcess
    database_url: str
    secret: bytes
    resource_client: tuple[str, str]
    http: httpx.Client
    sent: Counter[tuple[str, int]] = field(default_factory=Counter)
    """Generated cases sent, by operation and the status of the answer."""
    _key: str | None = None
    _key_id: int | None = None

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def resource_server_auth(self) -> str:
        """The resource server's HTTP Basic credentials (RFC 6749 section 2.3.1)."""
        client_id, client_secret = self.resource_client
        return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()

    def api_key(self) -> str:
        """The harness's key, minted anew when a generated DELETE revoked it."""
        if self._key is None:
            self._key = self.mint_key()
            me = self.http.get("/api/me", headers={"Authorization": f"Bearer {self._key}"})
            assert me.status_code == 200, me.text
            self._key_id = int(me.json()["key"]["id"])
        return self._key

    def mint_key(self) -> str:
        """A key through the whole flow: start, approve as the fuzz user, poll."""
        started = self.http.post("/oauth/device/authorize", data={"client_id": PUBLIC_CLIENT})
        assert started.status_code == 200, started.text
        flow = started.json()
        asyncio.run(
            approve_through_service(self.database_url, self.secret, flow["user_code"], FUZZ_USER)
        )
        granted = self.http.post("/oauth/device/token", data=token_form(flow["device_code"]))
        assert granted.status_code == 200, granted.text
        return str(granted.json()["access_token"])

    def observe(self, case: Any, response: schemathesis.Response) -> None:
        """Count a generated case, and forget the key a generated DELETE revoked."""
        sent_auth = response.request.headers.get("authorization") or ""
        if isinstance(sent_auth, bytes):
            sent_auth = sent_auth.decode("latin-1")
        assert "{harness-" not in sent_auth, f"a credentials placeholder was sent: {sent_auth}"
        self.sent[case.operation.label, response.status_code] += 1
        if case.method.upper() == "DELETE" and response.status_code == 204:
            try:
                revoked = int(str((case.path_parameters or {}).get("key_id")))
            except ValueError:
                return
            if revoked == self._key_id:
                self._key = self._key_id = None

    def access_log(self) -> list[dict[str, Any]]:
        """The server's log records (JSON lines on its standard error)."""
        records = []
        for line in self.server.stderr().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records


@contextmanager
def database_for(backend: str, workdir: Path) -> Iterator[dict[str, str]]:
    """The server's database settings; a PostgreSQL database is created (migrated) for
    the run and dropped afterwards. SQLite is the embedded default in ``workdir``."""
    if backend == "sqlite":
        yield {}
        return
    with fresh_postgres_database("devicelink_fuzz") as url:
        yield {"DEVICELINK_DATABASE_URL": url}


def register_resource_server(env: dict[str, str], cwd: Path) -> tuple[str, str]:
    """A confidential client marked as a resource server, for introspection: its id and
    secret."""
    done = run_devicelink(
        "clients", "add", RESOURCE_CLIENT, "--confidential", "--resource-server", env=env, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    (secret,) = re.findall(r"^client_secret: (\S+)$", done.stdout, flags=re.MULTILINE)
    return RESOURCE_CLIENT, secret


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    """A ``devicelink serve`` on one backend, with a key and a resource server's
    credentials for the harness."""
    backend: str = request.param
    if backend not in BACKENDS:
        pytest.skip(f"DEVICELINK_FUZZ_BACKENDS={','.join(BACKENDS)}")
    workdir = tmp_path_factory.mktemp(f"fuzz-{backend}")
    port = free_port()
    secret = secrets.token_urlsafe(48)
    with database_for(backend, workdir) as database:
        env = clean_env(
            DEVICELINK_PUBLIC_URL=f"http://127.0.0.1:{port}",
            DEVICELINK_SECRET_KEY=secret,
            # Production allows 30 a minute per address; the fuzzer starts thousands.
            DEVICELINK_START_RATE_LIMIT="1000000/minute",
            DEVICELINK_LOG_FORMAT="json",
            **database,
        )
        database_url = database.get(
            "DEVICELINK_DATABASE_URL",
            f"sqlite:///{workdir / 'devicelink-data' / 'devicelink.db'}",
        )
        with launcher(workdir / "logs") as launch:
            server = launch(env=env, cwd=workdir, port=port)
            resource_client = register_resource_server(env, workdir)
            with httpx.Client(base_url=server.base_url, timeout=30) as http:
                fuzz = FuzzTarget(
                    backend=backend,
                    server=server,
                    database_url=database_url,
                    secret=secret.encode(),
                    resource_client=resource_client,
                    http=http,
                )
                fuzz.api_key()
                ACTIVE[:] = [fuzz]
                try:
                    yield fuzz
                finally:
                    ACTIVE.clear()


def the_app_schema() -> dict[str, Any]:
    """The OpenAPI schema ``devicelink serve`` serves, built from the same application
    code in this process (no I/O): schemathesis needs it when pytest collects the tests,
    before any server runs. :func:`test_the_fuzzed_schema_is_the_one_the_server_serves`
    checks that it is exactly what the running server answers at ``/openapi.json``."""
    settings = Settings(
        public_url="http://127.0.0.1:8000",
        secret_key=SecretStr(secrets.token_urlsafe(48)),
        database_url="sqlite://",
        openapi=True,
        fast_path=True,
    )
    return create_app(settings).openapi()


APP_SCHEMA = the_app_schema()
schema = schemathesis.openapi.from_dict(APP_SCHEMA, config=schemathesis.Config())
ACTIVE: list[FuzzTarget] = []
"""The server being fuzzed (set by the ``target`` fixture)."""

# The harness's credentials: its API key on the bearer operations, the resource server's
# on introspection (the other client-authenticated operations are left to the public
# client, which needs none). Schemathesis builds some cases while pytest collects, before
# any server runs, so the providers set placeholders, which the test replaces with the
# server's current credentials just before sending (the key changes when a generated
# DELETE revokes it). No replay on 401: a 401 is an answer to check.
API_KEY_PLACEHOLDER = "Bearer {harness-api-key}"
RESOURCE_SERVER_PLACEHOLDER = "Basic {harness-resource-server}"


class PlaceholderAuth:
    """An auth provider that sends its ``placeholder`` as the Authorization header."""

    placeholder: str

    def get(self, case: Any, ctx: Any) -> str:
        return self.placeholder

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": data}


@schema.auth(refresh_interval=None, retry_on=[]).apply_to(path_regex="^/api/")
class HarnessApiKey(PlaceholderAuth):
    placeholder = API_KEY_PLACEHOLDER


@schema.auth(refresh_interval=None, retry_on=[]).apply_to(path="/oauth/introspect")
class HarnessResourceServer(PlaceholderAuth):
    placeholder = RESOURCE_SERVER_PLACEHOLDER


def fill_in_credentials(case: Any, target: FuzzTarget) -> None:
    """Replace the placeholders of the auth providers with real credentials."""
    headers = case.headers
    if not headers:
        return
    value = headers.get("Authorization")
    if value == API_KEY_PLACEHOLDER:
        headers["Authorization"] = f"Bearer {target.api_key()}"
    elif value == RESOURCE_SERVER_PLACEHOLDER:
        headers["Authorization"] = target.resource_server_auth()


# --- the fuzzing ---------------------------------------------------------------------------


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    # The CI run replays the same examples every time; the long run explores.
    derandomize=not LONG_RUN,
    # Each example is an HTTP request to another process: "too slow" and the other
    # health checks judge in-process data generation, not this.
    suppress_health_check=list(HealthCheck),
)
def test_every_machine_endpoint_keeps_its_contract(case: Any, target: FuzzTarget) -> None:
    fill_in_credentials(case, target)
    response = case.call(base_url=target.base_url, timeout=30)
    target.observe(case, response)
    case.validate_response(response, checks=CHECKS)


# --- answers random requests cannot reach --------------------------------------------------

FORM = "application/x-www-form-urlencoded"


def send(
    target: FuzzTarget,
    method: str,
    path: str,
    status: int,
    *,
    body: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> schemathesis.Response:
    """One request built by hand for an operation of the schema, sent to the server and
    checked as the generated ones are (``ignored_auth`` aside: it judges generated
    credentials)."""
    operation = schema[path][method]
    extra: dict[str, Any] = {"body": body, "media_type": FORM} if body is not None else {}
    if query is not None:
        extra["query"] = query
    case = operation.Case(headers=headers, path_parameters=path_parameters, **extra)
    response = case.call(base_url=target.base_url, timeout=30)
    assert response.status_code == status, response.text
    case.validate_response(response, checks=[c for c in CHECKS if c is not ignored_auth])
    return response


def test_the_answers_of_a_whole_flow_match_the_schema(target: FuzzTarget) -> None:
    """Random device codes and keys only ever reach the error answers: here the whole
    flow, by hand, with every answer checked against the schema as above."""
    for path in ("/.well-known/oauth-authorization-server", "/healthz", "/readyz", "/metrics"):
        send(target, "GET", path, 200)

    flow = send(target, "POST", "/oauth/device/authorize", 200, body={"client_id": PUBLIC_CLIENT})
    poll = {"grant_type": DEVICE_CODE_GRANT, "device_code": flow.json()["device_code"]}
    pending = send(target, "POST", "/oauth/device/token", 400, body=poll)
    assert pending.json()["error"] == "authorization_pending"
    slow_down = send(target, "POST", "/oauth/device/token", 400, body=poll)
    assert slow_down.json()["error"] == "slow_down"
    assert isinstance(slow_down.json()["interval"], int)

    asyncio.run(
        approve_through_service(
            target.database_url, target.secret, flow.json()["user_code"], FUZZ_USER
        )
    )
    granted = send(target, "POST", "/oauth/device/token", 200, body=poll)
    key = granted.json()["access_token"]
    consumed = send(target, "POST", "/oauth/device/token", 400, body=poll)
    assert consumed.json()["error"] == "invalid_grant"

    bearer = {"Authorization": f"Bearer {key}"}
    me = send(target, "GET", "/api/me", 200, headers=bearer)
    send(target, "GET", "/api/keys", 200, headers=bearer)
    resource_server = {"Authorization": target.resource_server_auth()}
    active = send(
        target, "POST", "/oauth/introspect", 200, body={"token": key}, headers=resource_server
    )
    assert active.json()["active"] is True
    send(target, "POST", "/oauth/introspect", 401, body={"token": key})

    key_id = me.json()["key"]["id"]
    send(
        target,
        "DELETE",
        "/api/keys/{key_id}",
        204,
        headers=bearer,
        path_parameters={"key_id": key_id},
    )
    send(target, "GET", "/api/me", 401, headers=bearer)
    inactive = send(
        target, "POST", "/oauth/introspect", 200, body={"token": key}, headers=resource_server
    )
    assert inactive.json() == {"active": False}

    other = target.mint_key()
    send(target, "POST", "/oauth/revoke", 200, body={"token": other, "client_id": PUBLIC_CLIENT})
    send(target, "GET", "/api/keys", 401, headers={"Authorization": f"Bearer {other}"})

    too_large = {"device_code": "x" * 70_000}
    send(target, "POST", "/oauth/device/token", 413, body=too_large)
    send(target, "POST", "/oauth/device/authorize", 413, body={"scope": "x" * 70_000})


def test_the_answers_of_a_same_device_sign_in_match_the_schema(target: FuzzTarget) -> None:
    """Same-device sign-in by hand (random requests never hold a session or a code):
    the authorization endpoint's answers, the consent page, the code redeemed once at
    /oauth/token and refused the second time, each checked against the schema."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    redirect_uri = "http://127.0.0.1:50123/callback"
    request = {
        "response_type": "code",
        "client_id": PUBLIC_CLIENT,
        "redirect_uri": redirect_uri,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        "state": "fuzz",
    }
    send(target, "GET", AUTHORIZE, 303, query=request)  # to sign-in
    send(target, "GET", AUTHORIZE, 400, query={**request, "client_id": "nobody"})
    (session,) = open_sessions(target.database_url, target.secret.decode(), [FUZZ_USER])
    cookie = {"Cookie": f"devicelink_session={session}"}
    consent = send(target, "GET", AUTHORIZE, 200, query=request, headers=cookie)
    sealed = re.search(r'name="request" value="([^"]*)"', consent.text)
    csrf = re.search(r'name="csrf_token" value="([^"]*)"', consent.text)
    assert sealed is not None
    assert csrf is not None
    decided = target.http.post(
        "/oauth/authorize/decide",
        data={
            "action": "approve",
            "csrf_token": html.unescape(csrf.group(1)),
            "request": html.unescape(sealed.group(1)),
        },
        headers=cookie,
    )
    assert decided.status_code == 303, decided.text
    (code,) = parse_qs(urlsplit(decided.headers["location"]).query)["code"]
    redeem = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": PUBLIC_CLIENT,
        "code_verifier": verifier,
    }
    granted = send(target, "POST", "/oauth/token", 200, body=redeem)
    replayed = send(target, "POST", "/oauth/token", 400, body=redeem)
    assert replayed.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {granted.json()['access_token']}"}
    send(target, "GET", "/api/me", 401, headers=bearer)  # revoked by the replay


# --- after the fuzzing ---------------------------------------------------------------------


def test_the_fuzzed_schema_is_the_one_the_server_serves(target: FuzzTarget) -> None:
    served = target.http.get("/openapi.json")
    assert served.status_code == 200, served.text
    assert served.json() == APP_SCHEMA


def test_the_server_answered_no_5xx_and_logged_no_error(
    target: FuzzTarget, fuzz_report: dict[str, str]
) -> None:
    """Read back from the server's access log: every request it answered during the
    fuzzing (the checks' own probes included), none with a 5xx, and no error logged."""
    records = target.access_log()
    answered = [r for r in records if r.get("logger") == "devicelink.access"]
    statuses = Counter(int(r["status"]) for r in answered)
    generated = sum(target.sent.values())
    per_operation: dict[str, Counter[int]] = {}
    for (label, status), count in sorted(target.sent.items()):
        per_operation.setdefault(label, Counter())[status] += count
    fuzz_report[target.backend] = "\n".join(
        [
            f"{len(answered)} requests answered ({generated} generated cases, the rest the "
            f"checks' probes and the harness's own), by status: "
            f"{dict(sorted(statuses.items()))}",
            *(
                f"    {label}: {sum(counts.values())} generated, {dict(sorted(counts.items()))}"
                for label, counts in per_operation.items()
            ),
        ]
    )
    assert len(answered) >= generated, "the access log does not show every request"
    assert not [s for s in statuses if s >= 500], f"5xx answers: {statuses}"
    errors = [r for r in records if r.get("level") in ("error", "critical")]
    assert not errors, f"the server logged errors: {errors[:5]}"
    operations = {
        f"{method.upper()} {path}" for path, item in APP_SCHEMA["paths"].items() for method in item
    }
    assert set(per_operation) == operations, "operations the fuzzing never reached"


# --- a server bug (found while describing DELETE /api/keys/{key_id}) -----------------------


@pytest.mark.parametrize("key_id", ["²", "9" * 5000], ids=["superscript-two", "5000-digits"])
def test_deleting_a_key_id_that_is_no_number_is_not_found(target: FuzzTarget, key_id: str) -> None:
    """Found while describing the route: ``key_id.isdigit()`` accepted "²" and numbers
    int() refuses, and the route answered 500. Last in the module, so that a regression's
    500s also show in the log check above."""
    send(
        target,
        "DELETE",
        "/api/keys/{key_id}",
        404,
        headers={"Authorization": f"Bearer {target.api_key()}"},
        path_parameters={"key_id": key_id},
    )
