"""RFC 9449 checks as pure functions: the proof (syntax, header, signature, claims), nonces, the
``Authorization`` header, the ``WWW-Authenticate`` challenge and the reported request. Values in
(including ``now``), values out or a :class:`~verifier.domain.reasons.Denial` raised; no I/O."""
