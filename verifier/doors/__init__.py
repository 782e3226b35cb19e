"""The front doors: the ``Verify`` RPC, Envoy's ``Check`` and the forward-auth HTTP listener.
Each turns its wire message into :class:`~verifier.domain.model.RequestFacts`, asks the engine,
and turns the :class:`~verifier.domain.model.Decision` back into its wire answer; none holds a
check of its own."""
