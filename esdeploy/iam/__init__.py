"""Operator tool layer: IAM as AWS evaluates it, shared by tests/iam, the embedded AWS and `esdeploy doctor`.

Nothing here is imported by the Lambdas (app.py, chalicelib): it is not in the Lambda bundle.
"""
