"""The browser pages: sign in, enter the code, compare and approve (RFC 8628 section 3.3),
and the connected devices. One module a flow; :mod:`.common` is what they share.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response

from devicelink.http.errors import PageRoute
from devicelink.http.oauth import VERIFY_PATH
from devicelink.http.pages import devices, signin, verification
from devicelink.http.pages.common import href, redirect

STYLESHEET = Path(__file__).parent.parent / "static" / "devicelink.css"

router = APIRouter(include_in_schema=False, route_class=PageRoute)


@router.get("/")
async def home(request: Request) -> Response:
    return redirect(request, href(request, VERIFY_PATH))


@router.get("/static/devicelink.css")
async def stylesheet() -> Response:
    return FileResponse(
        STYLESHEET, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
    )


router.include_router(signin.router)
router.include_router(verification.router)
router.include_router(devices.router)
