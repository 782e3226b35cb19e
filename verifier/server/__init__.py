"""Hosting what :mod:`verifier.app` builds: the gRPC server with admission control, the
forward-auth HTTP listener, health, signals and graceful drain, and the ``--workers`` supervisor."""
