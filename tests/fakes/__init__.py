"""Test fakes: in-memory stand-ins for the ports (tests/fakes/memory.py) and for SageMaker (fake_hosting.py)."""
from tests.fakes.fake_hosting import (
    ALL_PARTS,
    Answer,
    FakeHosting,
    FakeResource,
    fake_embedding,
)

__all__ = ["ALL_PARTS", "Answer", "FakeHosting", "FakeResource", "fake_embedding"]
