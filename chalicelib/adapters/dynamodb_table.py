"""Adapter: a DynamoDB table spoken to in Python types, as `boto3.resource("dynamodb").Table` does, on either client.

boto3's resource layer loads its resource model and builds its classes at run time: about 0.3 s of a cold
Lambda's first request (bench/coldstart.py), for the six calls our adapters make. Two clients speak Python
values under a table: the stdlib one (dynamodb_http.py, what the Lambdas use) and a boto3 client taught by
`speak_python_types`, which registers boto3's own `TransformationInjector` on the client's events exactly as
the resource registers it, so items read and write the same through either (the store contract runs both).
"""
from __future__ import annotations

from typing import Any


def speak_python_types(client: Any) -> Any:
    """Make `client` take and give Python values and `Key`/`Attr` conditions, as the resource's client does."""
    from boto3.dynamodb.transform import TransformationInjector, copy_dynamodb_params

    injector = TransformationInjector()
    events = client.meta.events
    # The unique ids are the resource's: registering twice (one client, two tables) stays one handler each.
    events.register("provide-client-params.dynamodb", copy_dynamodb_params, unique_id="dynamodb-create-params-copy")
    events.register(
        "before-parameter-build.dynamodb",
        injector.inject_condition_expressions,
        unique_id="dynamodb-condition-expression",
    )
    events.register(
        "before-parameter-build.dynamodb", injector.inject_attribute_value_input, unique_id="dynamodb-attr-value-input"
    )
    events.register(
        "after-call.dynamodb", injector.inject_attribute_value_output, unique_id="dynamodb-attr-value-output"
    )
    return client


class DocumentTable:
    """The table calls our DynamoDB adapters make, with the resource's `Table` signatures (no `TableName`), on a
    client that speaks Python values: `speak_python_types(boto3 client)` or the stdlib DynamoDbHttpClient."""

    def __init__(self, client: Any, name: str) -> None:
        self._client = client
        self.name = name

    @property
    def client(self) -> Any:
        """The client it speaks through (a test listens to a boto3 client's events)."""
        return self._client

    def get_item(self, **request: Any) -> dict[str, Any]:
        return dict(self._client.get_item(TableName=self.name, **request))

    def put_item(self, **request: Any) -> dict[str, Any]:
        return dict(self._client.put_item(TableName=self.name, **request))

    def update_item(self, **request: Any) -> dict[str, Any]:
        return dict(self._client.update_item(TableName=self.name, **request))

    def delete_item(self, **request: Any) -> dict[str, Any]:
        return dict(self._client.delete_item(TableName=self.name, **request))

    def query(self, **request: Any) -> dict[str, Any]:
        return dict(self._client.query(TableName=self.name, **request))

    def scan(self, **request: Any) -> dict[str, Any]:
        return dict(self._client.scan(TableName=self.name, **request))
