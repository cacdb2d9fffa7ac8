"""The host's brand, from settings only (issue 17, item 6): its templates override
devicelink's, its product name is on every page and on the error page, the default
client carries the name it chose. Nothing is patched process-wide: two apps in one
process keep two brands."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.server import create_app
from tests.embedding.hosting import FAILING_USER, embedded, host_app, running

pytestmark = pytest.mark.anyio

ACME_BASE = """{% extends "devicelink/base.html" %}
{% block brand %}<span class="brand">ACME logo</span>{% endblock %}
{% block footer %}<footer>Acme Inc., support@acme.example</footer>{% endblock %}
"""


@pytest.fixture
def acme_templates(tmp_path: Path) -> Path:
    directory = tmp_path / "acme-templates"
    directory.mkdir()
    (directory / "base.html").write_text(ACME_BASE)
    return directory


def branded(settings: Settings, templates: Path | None, **updates: object) -> Settings:
    return embedded(settings, product_name="Acme Cloud", templates_dir=templates, **updates)


async def error_page(settings: Settings, templates: Path, username: str) -> httpx.Response:
    """What the branded host app answers its user ``username`` for the code page, when
    that fails: the error page (500)."""
    async with running(host_app(branded(settings, templates))) as host:
        host.sign_in(username)
        page = await host.http.get("/auth/oauth/device/verify")
    assert page.status_code == 500
    return page


def title_of(page: httpx.Response) -> str:
    start, end = page.text.index("<title>"), page.text.index("</title>")
    return page.text[start + len("<title>") : end]


async def test_the_hosts_templates_and_product_name_are_on_the_pages(
    settings: Settings, acme_templates: Path
) -> None:
    (acme_templates / "code.html").write_text(
        '{% extends "devicelink/code.html" %}{% block title %}Link your terminal{% endblock %}'
    )
    async with running(host_app(branded(settings, acme_templates))) as host:
        host.sign_in("alice")
        code = await host.http.get("/auth/oauth/device/verify")
        assert code.status_code == 200
        assert title_of(code) == "Link your terminal · Acme Cloud"  # the host's code.html
        assert "ACME logo" in code.text  # the host's base.html, around devicelink's form
        assert "support@acme.example" in code.text
        assert 'name="user_code"' in code.text
        assert "devicelink" not in code.text.replace("/static/devicelink.css", "")

        devices = await host.http.get("/auth/devices")
        assert title_of(devices) == "Connected devices · Acme Cloud"  # devicelink's page, branded
        assert "ACME logo" in devices.text


async def test_the_product_name_alone_replaces_devicelink(settings: Settings) -> None:
    async with running(host_app(branded(settings, None))) as host:
        host.sign_in("alice")
        code = await host.http.get("/auth/oauth/device/verify")
        assert title_of(code) == "Enter your code · Acme Cloud"
        assert '<span class="logo" aria-hidden="true">⌁</span> Acme Cloud</span>' in code.text


async def test_the_error_page_carries_the_brand(settings: Settings, acme_templates: Path) -> None:
    # The host's resolver raises for this user: devicelink answers the error page.
    page = await error_page(settings, acme_templates, FAILING_USER)
    assert page.headers["content-type"].startswith("text/html")
    assert title_of(page) == "Something went wrong · Acme Cloud"
    assert "ACME logo" in page.text
    assert 'href="/auth/"' in page.text
    assert "session store" not in page.text  # the detail goes to the log only


async def test_a_host_error_template_of_its_own(settings: Settings, acme_templates: Path) -> None:
    (acme_templates / "error.html").write_text(
        "<!doctype html><title>{{ title }} | {{ product_name }}</title><p>Call Acme support"
    )
    page = await error_page(settings, acme_templates, FAILING_USER)
    assert title_of(page) == "Something went wrong | Acme Cloud"
    assert "Call Acme support" in page.text


async def test_templates_that_fail_still_get_an_error_page(
    settings: Settings, acme_templates: Path
) -> None:
    """The error page answers failures: it must not fail itself, whatever the host's
    templates do (here every page, the error page too, extends a base that raises)."""
    (acme_templates / "base.html").write_text("{{ no_such_thing.attribute }}")
    page = await error_page(settings, acme_templates, "alice")
    assert title_of(page) == "Something went wrong · Acme Cloud"
    assert 'href="/auth/"' in page.text


async def test_the_standalone_servers_error_pages_carry_the_brand(
    settings: Settings, acme_templates: Path
) -> None:
    app = create_app(
        settings.model_copy(update={"product_name": "Acme Login", "templates_dir": acme_templates})
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as http:
            page = await http.get("/no-such-page", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert title_of(page) == "Page not found · Acme Login"
    assert "ACME logo" in page.text


async def test_two_apps_in_one_process_keep_their_own_brand(settings: Settings) -> None:
    async with (
        running(host_app(embedded(settings, product_name="Acme Cloud"))) as acme,
        running(host_app(embedded(settings, product_name="Globex"))) as globex,
    ):
        acme.sign_in("alice")
        globex.sign_in("bob")
        assert "· Acme Cloud" in title_of(await acme.http.get("/auth/oauth/device/verify"))
        assert "· Globex" in title_of(await globex.http.get("/auth/oauth/device/verify"))


async def test_the_default_clients_name_is_a_setting(settings: Settings) -> None:
    async with running(host_app(embedded(settings, default_client_name="Acme CLI"))) as host:
        host.sign_in("alice")
        _, confirm = await host.confirm_page()
    assert "Is this your device?" in confirm.text
    assert "<dd>Acme CLI</dd>" in confirm.text
    assert "devicelink CLI" not in confirm.text


async def test_setting_the_name_renames_an_existing_default_client(settings: Settings) -> None:
    async with running(host_app(embedded(settings))) as first:
        client = await first.client("devicelink-cli")
    assert client.name == "devicelink CLI"
    async with running(host_app(embedded(settings, default_client_name="Acme CLI"))) as again:
        renamed = await again.client("devicelink-cli")
    assert renamed.name == "Acme CLI"
    assert renamed.created_at == client.created_at

    # Left at its default, the setting does not undo a name the host chose.
    async with running(host_app(embedded(settings))) as third:
        kept = await third.client("devicelink-cli")
    assert kept.name == "Acme CLI"


def test_a_templates_directory_that_does_not_exist_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-dir"
    with pytest.raises(ConfigurationError, match="DEVICELINK_TEMPLATES_DIR"):
        settings.model_copy(update={"templates_dir": missing}).check()
