"""Operator tool layer: `esdeploy acceptance` — one opt-in run on an AWS account: what only an account shows.

Nothing here runs in a Lambda. The command prints its plan (what it creates, on which instance
type, at what estimated cost), runs the lifecycle through the esdeploy API once the person passed
--yes, records the facts of docs/infra.md "What only an account shows" (`facts.py`, one list),
and tears down everything it made on any exit.
"""
