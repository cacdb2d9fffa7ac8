"""Use cases: start a device flow, poll it, approve or deny it, check a key.

The service sees storage only through :mod:`devicelink.core.ports`; it owns the order
of operations inside a transaction, not the SQL and not the HTTP.
"""

from devicelink.service.device_flow import DeviceFlowService, StartedFlow
from devicelink.service.flows import TokenGrant
from devicelink.service.issuing import StoredKeyIssuer
from devicelink.service.keys import KeyService

__all__ = ["DeviceFlowService", "KeyService", "StartedFlow", "StoredKeyIssuer", "TokenGrant"]
