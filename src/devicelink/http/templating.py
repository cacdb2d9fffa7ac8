"""The pages' templates, with the host's brand: ``DEVICELINK_TEMPLATES_DIR`` overrides
devicelink's templates file by file (its files are looked up first, devicelink's after),
devicelink's own stay reachable as ``devicelink/NAME`` (so a host's ``base.html`` may
extend ``devicelink/base.html`` and change one block), and ``DEVICELINK_PRODUCT_NAME``
is in every page's context as ``product_name``.

Nothing process-wide: each templates directory gets its own Jinja environment, so two
applications in one process may carry two brands.
"""

from __future__ import annotations

import html
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from starlette.templating import Jinja2Templates

from devicelink.runtime.settings import Settings

log = logging.getLogger("devicelink.http")

TEMPLATES_DIR = Path(__file__).parent / "templates"
DEFAULT_PRODUCT_NAME = "devicelink"


@lru_cache(maxsize=32)
def _templates(host_dir: Path | None) -> Jinja2Templates:
    ours = jinja2.FileSystemLoader(str(TEMPLATES_DIR))
    loaders: list[jinja2.BaseLoader] = []
    if host_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(host_dir)))
    loaders += [ours, jinja2.PrefixLoader({"devicelink": ours})]
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders), autoescape=jinja2.select_autoescape()
    )
    return Jinja2Templates(env=env)


def templates_for(settings: Settings | None) -> Jinja2Templates:
    """The templates of an application with these settings (None: devicelink's own)."""
    return _templates(settings.templates_dir if settings is not None else None)


def product_name(settings: Settings | None) -> str:
    return settings.product_name if settings is not None else DEFAULT_PRODUCT_NAME


def render_error_page(settings: Settings | None, *, title: str, message: str, base: str) -> str:
    """The error page, from the ``error.html`` template (the host's, when it has one).

    It answers failures, so it must not fail itself: if the template cannot be loaded or
    raises, a minimal page without the templates is returned instead."""
    context: dict[str, Any] = {
        "title": title,
        "message": message,
        "base": base,
        "product_name": product_name(settings),
        "tone": "error",
        "user": None,
        "csrf_token": "",
    }
    try:
        return templates_for(settings).get_template("error.html").render(context)
    except Exception:  # the error page must answer whatever the templates do
        log.exception("the error page template failed; answering the minimal page")
        return minimal_error_page(
            title=title, message=message, base=base, product=context["product_name"]
        )


def minimal_error_page(*, title: str, message: str, base: str, product: str) -> str:
    """The error page without templates: the last resort of :func:`render_error_page`."""
    name = html.escape(product)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} · {name}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
        f'<p><a href="{html.escape(base)}/">Start again</a></p></body></html>'
    )
