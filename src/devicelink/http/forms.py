"""Reading the small form posts of the protocol endpoints.

Deliberately not FastAPI's ``Form()``: the endpoints need a handful of fields, exact
control over the error format (RFC 6749 section 5.2, never 422), the "no parameter
twice" rule of section 3.2, and a hard body limit, and they are the fast path.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from devicelink.core.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 64


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise RequestTooLarge()
        except ValueError:
            raise InvalidRequest("malformed Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """The form's fields; an empty value counts as absent (RFC 8628 section 3.1)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await read_body(request, limit)
    if media_type != FORM_MEDIA_TYPE:
        if not body and not media_type:
            return {}  # an empty post: every parameter absent
        raise UnsupportedMediaType()
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise InvalidRequest("the form is not valid UTF-8") from None
    except ValueError:
        raise InvalidRequest("the form has too many fields") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        # RFC 6749 section 3.2: "Request and response parameters MUST NOT be included
        # more than once", blank or not.
        if name in fields:
            raise InvalidRequest(f"parameter {name!r} is repeated")
        fields[name] = value
    return {name: value for name, value in fields.items() if value != ""}
