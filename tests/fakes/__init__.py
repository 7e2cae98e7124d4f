"""Test fakes: in-memory stand-ins for ports that have no in-memory adapter in chalicelib."""
from tests.fakes.fake_hosting import (
    ALL_PARTS,
    Answer,
    FakeHosting,
    FakeResource,
    fake_embedding,
)

__all__ = ["ALL_PARTS", "Answer", "FakeHosting", "FakeResource", "fake_embedding"]
