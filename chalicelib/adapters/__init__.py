"""Adapters: the only code that knows AWS wire details."""
