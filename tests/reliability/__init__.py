"""Reliability and security guarantees, each proven by a test (see docs/reliability.md)."""
