"""The test OpenID Connect provider (node-oidc-provider) and helpers to drive it."""
