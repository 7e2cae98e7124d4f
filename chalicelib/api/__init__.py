"""HTTP/SQS schemas and the mapping from domain errors to HTTP answers."""
