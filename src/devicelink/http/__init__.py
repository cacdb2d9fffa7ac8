"""HTTP: the routes, the browser pages, the fast path and the one error path.

It owns no protocol decision (``core``), no SQL (``storage``) and no process set-up
(``server``): a route reads the request, calls a service through the runtime and turns
the result, or the error, into a response.
"""
