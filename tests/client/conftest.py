"""Client fixtures: the real API on loopback (moto and the fake SageMaker behind it), reused from the CLI's tests."""
from __future__ import annotations

from tests.cli.conftest import api_url  # noqa: F401 - the served Chalice app
from tests.scenarios.conftest import world  # noqa: F401 - the moto + fake SageMaker world
