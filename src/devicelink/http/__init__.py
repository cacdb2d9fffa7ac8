"""HTTP: the routes, the browser pages, the fast path and the one error path.

``oauth`` holds the machine endpoints and ``openapi`` their description; ``api`` the
resource endpoints and probes; ``pages`` the browser's flows; ``errors`` turns every
failure into an answer; ``fast_path`` serves the hot requests before the framework;
``resource`` protects a host application's own routes with devicelink's keys.

It owns no protocol decision (``core``), no SQL (``storage``) and no process set-up
(``server``): a route reads the request, calls a service through the runtime and turns
the result, or the error, into a response.
"""
