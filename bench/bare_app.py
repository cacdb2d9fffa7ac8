"""Ceilings for the benchmark: what one uvicorn process answers when the app does
(almost) nothing.

- ``fastapi_app``: ``POST /form`` parses the same form as a token poll with FastAPI's
  ``Form()`` and returns a small JSON object, the way an ordinary FastAPI endpoint does;
- ``asgi_app``: a bare ASGI callable, no framework: it reads the body and answers a fixed
  small JSON.

Run as ``uvicorn --app-dir bench bare_app:fastapi_app`` (or ``bare_app:asgi_app``);
run.py starts them with the same uvicorn settings as ``devicelink serve``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Form

fastapi_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@fastapi_app.post("/form")
async def form(
    device_code: Annotated[str, Form()],
    grant_type: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
) -> dict[str, Any]:
    return {
        "device_code_length": len(device_code),
        "grant_type": grant_type,
        "client_id": client_id,
    }


_BODY = b'{"status":"ok"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the request body, as any endpoint that reads a form must
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
