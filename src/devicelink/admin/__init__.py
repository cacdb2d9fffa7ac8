"""The operator's command line: ``serve``, ``db``, ``users``, ``clients``, ``keys``,
``audit``, ``purge`` and ``config``, registered on the ``devicelink`` group.

It owns no HTTP route and no protocol decision: it builds the runtime or a store and
calls the services, as a request would.
"""

from devicelink.admin.commands import register

__all__ = ["register"]
