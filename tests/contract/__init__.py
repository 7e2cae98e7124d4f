"""Contract suites: one set of behaviour cases run against every implementation of a port."""
