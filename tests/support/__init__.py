"""What the test suites share: the app in this process, ``devicelink`` processes and
servers, PostgreSQL databases, the device's and the browser's side of a flow over HTTP.

Imported as ``from tests.support.servers import ...``. It holds no fixtures: those live
in the conftest.py of the suites that use them.
"""
