"""Access tokens: JWT validation and claims (RFC 9068), key sources (a file, a URL, discovery),
introspection (RFC 7662) with client authentication, and issuer presets."""
