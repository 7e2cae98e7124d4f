"""The one version of esdeploy: the package (pyproject reads it), the CLI's --version, the API's
OpenAPI document and /health. One number for every public surface (the HTTP contract, the Python
client, the CLI): semantic versioning over all of them, so a change any caller must adapt to is major."""

VERSION = "2.0.0"
