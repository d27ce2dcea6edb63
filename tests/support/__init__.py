"""Helpers for tests that start real processes (gateway, nginx, backends)."""
