"""Upstream login: local accounts and OpenID Connect providers (the sign-in issue)."""
