"""What one running devicelink holds: its settings, its services wired to a store, its
rate limits, its logs and metrics.

It owns no route (``http``) and no process life (``server``): both receive a
:class:`Runtime` built here.
"""

from devicelink.runtime.settings import Settings
from devicelink.runtime.wiring import Runtime, build_runtime

__all__ = ["Runtime", "Settings", "build_runtime"]
