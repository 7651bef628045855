"""Providers: one per backend, found by name through the registry."""
