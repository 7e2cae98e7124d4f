"""Operator tool layer: esdeploy's Python client (`esdeploy.Client`), CLI, model packager and local stand-ins."""

from chalicelib.version import VERSION as __version__  # the one place (pyproject reads it too)
from esdeploy.api_client import Alias, ApiError, ApiUnreachableError, Models, SigningError, Task
from esdeploy.client import AwsSetupError, Client, TaskHandle, TaskWaitTimeoutError
from esdeploy.embedder import Embedder, EmbedderError, Embeddings, EndpointRefusedError, ModelNotDeployedError

__all__ = [
    "Alias",
    "ApiError",
    "ApiUnreachableError",
    "AwsSetupError",
    "Client",
    "Embedder",
    "EmbedderError",
    "Embeddings",
    "EndpointRefusedError",
    "ModelNotDeployedError",
    "Models",
    "SigningError",
    "Task",
    "TaskHandle",
    "TaskWaitTimeoutError",
    "__version__",
]
