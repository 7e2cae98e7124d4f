"""IAM, evaluated for every AWS call the product makes in the test suites (docs/infra.md)."""
