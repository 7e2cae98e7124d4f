"""Operator tool layer: the esdeploy CLI, model packager and local stand-ins (imports nothing heavy here)."""
