"""CORS of the REST and Pinning Service APIs, as IPFS Cluster configures Go's ``rs/cors`` (spec §1.5).

Preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered here with 204, carrying the
``Access-Control-Allow-*`` headers only when origin, method and headers are allowed. Actual requests get CORS
headers only when origin and method are allowed. Unlike Go, a cross-site request that could change something
is refused (403) when the policy does not allow it, rather than served without CORS headers (``refusal``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from pincluster.cors import CorsRules

__all__ = ["CORSPolicy"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class CORSPolicy:
    """The configured CORS options (``cors_*``), answered by :class:`pincluster.cors.CorsRules` (rs/cors 1.11,
    as Go's daemon); rs/cors defaults apply to empty lists."""

    allowed_origins: Sequence[str] = ("*",)
    allowed_methods: Sequence[str] = ("GET",)
    allowed_headers: Sequence[str] = ()
    exposed_headers: Sequence[str] = ()
    allow_credentials: bool = True
    max_age: timedelta = timedelta(0)

    @functools.cached_property
    def rules(self) -> CorsRules:
        return CorsRules(self.allowed_origins, self.allowed_methods, self.allowed_headers, self.exposed_headers,
                         self.allow_credentials, int(self.max_age.total_seconds()))

    def preflight(self, request: web.Request) -> web.Response:
        """The answer to a preflight request (always 204, headers only when everything is allowed)."""
        h = request.headers
        requested = h.getall("Access-Control-Request-Headers", None)
        return web.Response(status=204, headers=self.rules.preflight(
            h.get("Origin", ""), h.get("Access-Control-Request-Method", ""), requested))

    def decorate(self, request: web.Request, resp: web.StreamResponse) -> None:
        """Add CORS headers to the response of an actual (non-preflight) request."""
        for name, value in self.rules.actual(request.headers.get("Origin", ""), request.method):
            if name == "Vary":
                resp.headers.add(name, value)
            else:
                resp.headers[name] = value

    def refusal(self, request: web.Request) -> str | None:
        """Why a request from a web page must not run, or None. A browser sends a "simple" cross-site POST
        (no custom headers: ``POST /pins/<cid>``, a form's ``/add``) without a preflight, and Go serves it
        without CORS headers: the page cannot read the answer, but the cluster pinned. Here a request that
        can change something (not GET, HEAD or OPTIONS) from a web page (its ``Origin`` header, which browsers
        send on such requests) runs only when the policy allows that origin and method, as a preflight would
        have required. Programs (ctl, the SDK, curl) send no ``Origin``."""
        origin = request.headers.get("Origin", "")
        if not origin or request.method in _SAFE_METHODS:
            return None
        # No exception for an Origin equal to the request's own host: after a DNS rebinding, a hostile page is
        # "same-origin" with the API (its name now resolves to 127.0.0.1). A page served from the API's own
        # origin is treated as any other (list its origin and methods).
        rules = self.rules
        if rules.origin_allowed(origin) and rules.method_allowed(request.method):
            return None
        return (f"cross-site request refused: origin {origin} may not send {request.method} requests to this API "
                "(allow it with cors_allowed_origins and cors_allowed_methods)")

    def check(self, request: web.Request) -> web.Response | None:
        """The preflight answer, or None after marking the request for :meth:`on_prepare` (the REST API's
        request chain calls this directly)."""
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            return self.preflight(request)
        request[_CORS_KEY] = True
        return None

    async def on_prepare(self, request: web.Request, resp: web.StreamResponse) -> None:
        """``app.on_response_prepare`` hook: streamed responses are decorated too, before their headers go."""
        if request.get(_CORS_KEY, False):
            self.decorate(request, resp)


_CORS_KEY = web.RequestKey("pincluster.cors", bool)
