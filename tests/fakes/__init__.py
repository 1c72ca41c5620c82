"""Fake model-provider servers that speak the real wire protocols, for tests."""
