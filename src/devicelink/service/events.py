"""Telling an embedding application what happened (:mod:`devicelink.core.events`),
after the fact and without letting its callback break the request."""

from __future__ import annotations

import inspect
import logging

from devicelink.core.events import DeviceLinkEvent, EventCallback

log = logging.getLogger("devicelink.events")


class EventSink:
    """Calls the host's ``on_event`` callback; with none, does nothing.

    The services call :meth:`emit` only once the transaction that made the event
    happen has committed. Whatever the callback raises is logged, never raised.
    """

    def __init__(self, callback: EventCallback | None = None) -> None:
        self._callback = callback

    async def emit(self, event: DeviceLinkEvent) -> None:
        if self._callback is None:
            return
        try:
            outcome = self._callback(event)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:  # the host's code: logged, never the request's failure
            log.exception(
                "the on_event callback failed on a %s event (api key %s)",
                event.kind.value,
                event.api_key_id,
            )


NO_EVENTS = EventSink()
"""The sink of a server without an ``on_event`` callback."""
