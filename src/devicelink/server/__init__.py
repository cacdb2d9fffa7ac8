"""The process: the standalone ASGI application, the embeddable component, draining on
SIGTERM and the periodic purge.

It owns no route (``http``) and no settings or wiring (``runtime``); it assembles them.
"""

from devicelink.runtime.clients import ClientSpec
from devicelink.runtime.settings import Settings
from devicelink.server.app import create_app
from devicelink.server.embed import DeviceLink

__all__ = ["ClientSpec", "DeviceLink", "Settings", "create_app"]
