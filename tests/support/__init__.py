"""Helpers shared by the tests: real servers on loopback, free ports."""
