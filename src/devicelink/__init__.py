"""devicelink: sign command-line tools in through the browser (RFC 8628)."""

__version__ = "0.1.0"
