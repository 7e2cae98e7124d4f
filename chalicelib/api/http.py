"""API layer: running a route body and turning domain errors into JSON answers."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from chalice import Response

from chalicelib.api.errors import error_answer
from chalicelib.domain.errors import EsdeployError

logger = logging.getLogger(__name__)


def answer(produce: Callable[[], dict[str, Any] | list[Any]]) -> Response:
    """Call `produce`; a domain error becomes its mapped status, anything else a bare 500."""
    try:
        return Response(body=produce(), status_code=200)
    except EsdeployError as error:
        code, body = error_answer(error)
        log = logger.error if code >= 500 else logger.info
        log("request refused", extra={"status_code": code, "detail": body["detail"]})
        return Response(body=body, status_code=code)
    except Exception:
        # Logged with its trace for us; the caller gets no internals.
        logger.exception("unexpected error")
        return Response(body={"detail": "Internal error"}, status_code=500)


def in_our_error_shape(response: Response) -> Response:
    """Chalice refuses some requests itself (415, 405) with `{"Code", "Message"}`; clients expect `{"detail"}`."""
    body = response.body
    if response.status_code < 400 or not isinstance(body, dict) or set(body) != {"Code", "Message"}:
        return response
    detail = str(body["Message"])
    if body["Code"] == "UnsupportedMediaType":
        given = detail.partition(": ")[2]
        detail = f"Content-Type {given} is not supported: send the body as JSON with Content-Type: application/json"
    elif body["Code"] == "MethodNotAllowedError":
        detail = f"{detail}; this path allows {response.headers.get('Allow', '')}"
    return Response(body={"detail": detail}, status_code=response.status_code, headers=response.headers)
