"""Serving layer: code that runs inside the SageMaker endpoint container (copied into model.tar.gz/code/)."""
