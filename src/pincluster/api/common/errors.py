"""Error bodies of the HTTP APIs: ``{"code": <status>, "message": "<text>"}`` plus a newline (spec §1.3).

Exceptions map to statuses by meaning: :class:`~pincluster.errors.InvalidInput` → 400,
:class:`~pincluster.errors.NotFound` (or Go's text ``pin is not part of the pinset``) → 404, else 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

from pincluster.errors import NOT_IN_PINSET, InvalidInput, NotFound
from pincluster.types.codec import to_json
from pincluster.types.models import Error

__all__ = ["NOT_IN_PINSET", "ErrorBody", "error_body", "error_response", "json_response", "status_for"]

log = logging.getLogger("pincluster.restapi")

JSON_CT = "application/json"


def status_for(exc: BaseException) -> int:
    """The HTTP status for an exception raised by the cluster or by input parsing."""
    if isinstance(exc, InvalidInput):
        return 400
    if isinstance(exc, NotFound) or str(exc) == NOT_IN_PINSET:
        return 404
    return 500


def error_body(status: int, message: str) -> bytes:
    return to_json(Error(code=status, message=message)) + b"\n"


#: Renders an error response body from its status and text. The REST API uses :func:`error_body`
#: (``{"code","message"}``); the Pinning Service API passes its own (``{"error":{"reason","details"}}``).
ErrorBody = Callable[[int, str], bytes]


def _apply_headers(resp: web.StreamResponse, headers: Mapping[str, Sequence[str]] | None) -> None:
    for name, values in (headers or {}).items():
        for i, v in enumerate(values):
            if i == 0:
                resp.headers[name] = v
            else:
                resp.headers.add(name, v)


def error_response(
    status: int,
    message: str,
    headers: Mapping[str, Sequence[str]] | None = None,
    body: ErrorBody = error_body,
) -> web.Response:
    """A JSON error response carrying the configured extra headers; ``body`` renders the error's shape."""
    resp = web.Response(status=status, body=body(status, message), content_type=JSON_CT)
    _apply_headers(resp, headers)
    return resp


def json_response(
    body: bytes, status: int = 200, headers: Mapping[str, Sequence[str]] | None = None
) -> web.Response:
    """A JSON success response (``body`` from ``to_json``; a newline is appended as Go's encoder does)."""
    resp = web.Response(status=status, body=body + b"\n", content_type=JSON_CT)
    _apply_headers(resp, headers)
    return resp


def apply_headers(resp: web.StreamResponse, headers: Mapping[str, Sequence[str]] | None) -> None:
    """Add the configured extra ``headers`` (``name → [values]``) to a response."""
    _apply_headers(resp, headers)
