"""Domain layer: pure models, statuses, names and errors (no AWS, no os)."""
