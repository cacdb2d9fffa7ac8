"""Upstream sign-in: OpenID Connect against a real provider, ID token validation."""
