"""HTTP: FastAPI routers, templates, dependencies, and the wiring of everything below.

This package owns no protocol decision (``core``) and no SQL (``storage``).
"""

from devicelink.web.app import create_app
from devicelink.web.embed import DeviceLink
from devicelink.web.settings import Settings

__all__ = ["DeviceLink", "Settings", "create_app"]
