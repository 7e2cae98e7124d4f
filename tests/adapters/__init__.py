"""Adapter tests: each AWS adapter against moto or botocore stubs."""
