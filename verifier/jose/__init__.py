"""Generic JOSE, one module per RFC: JWS compact serialization and algorithms (RFC 7515,
RFC 7518 §3), JWKs (RFC 7517, RFC 7518 §6) and JWK thumbprints (RFC 7638). No DPoP and no
access-token rules here: :mod:`verifier.dpop` and :mod:`verifier.tokens` build on it."""
