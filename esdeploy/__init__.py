"""Operator tool layer: esdeploy's Python client (`esdeploy.Client`), CLI, model packager and local stand-ins."""

from importlib.metadata import PackageNotFoundError, version

from esdeploy.api_client import Alias, ApiError, ApiUnreachableError, SigningError, Task
from esdeploy.client import AwsSetupError, Client, TaskHandle, TaskWaitTimeoutError
from esdeploy.embedder import Embedder, EmbedderError, Embeddings, EndpointRefusedError, ModelNotDeployedError

try:
    __version__ = version("esdeploy")
except PackageNotFoundError:  # a checkout used without `pip install -e .`
    __version__ = "0+unknown"

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
    "SigningError",
    "Task",
    "TaskHandle",
    "TaskWaitTimeoutError",
    "__version__",
]
