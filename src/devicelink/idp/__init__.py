"""Upstream login: local accounts and OpenID Connect providers, each an
:class:`devicelink.core.ports.Authenticator` that turns a sign-in into an identity.
Mapping that identity to a user, and the browser session, belong to the service."""
