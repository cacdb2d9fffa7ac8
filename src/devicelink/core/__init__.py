"""The pure protocol: codes, errors, lifecycle decisions and the ports the service uses.

Standard library only, no I/O; every function that depends on time takes ``now``.
This package does not own persistence, HTTP or upstream login: those live above it
and are reached only through the Protocols in :mod:`devicelink.core.ports`.
"""
