"""Use cases: the application services that the handlers call."""
