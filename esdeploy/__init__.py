"""Operator tool layer: esdeploy's Python client (`esdeploy.Client`), CLI, model packager and local stand-ins."""

from importlib.metadata import PackageNotFoundError, version

from esdeploy.api_client import ApiError, ApiUnreachableError, SigningError
from esdeploy.client import AwsSetupError, Client, TaskHandle, TaskWaitTimeoutError
from esdeploy.embedder import Embedder, EmbedderError, Embeddings, EndpointRefusedError, ModelNotDeployedError

try:
    __version__ = version("esdeploy")
except PackageNotFoundError:  # a checkout used without `pip install -e .`
    __version__ = "0+unknown"

__all__ = [
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
    "TaskHandle",
    "TaskWaitTimeoutError",
    "__version__",
]
