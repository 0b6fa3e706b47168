"""CORS with the semantics of Go's ``rs/cors`` as IPFS Cluster configures it (spec §1.5).

Preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered here with 204, carrying the
``Access-Control-Allow-*`` headers only when origin, method and headers are allowed. Actual requests are
served either way; they get CORS headers only when origin and method are allowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from aiohttp import web

__all__ = ["CORSPolicy"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DEFAULT_HEADERS = ("Origin", "Accept", "Content-Type", "X-Requested-With")
_DEFAULT_METHODS = ("GET", "POST", "HEAD")


def _canonical(name: str) -> str:
    """Go's ``http.CanonicalHeaderKey``: ``x-requested-with`` → ``X-Requested-With``."""
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.strip().split("-"))


@dataclass(frozen=True)
class CORSPolicy:
    """The configured CORS options; rs/cors defaults apply to empty lists."""

    allowed_origins: Sequence[str] = ("*",)
    allowed_methods: Sequence[str] = ("GET",)
    allowed_headers: Sequence[str] = ()
    exposed_headers: Sequence[str] = ()
    allow_credentials: bool = True
    max_age: timedelta = timedelta(0)
    _origins_all: bool = field(init=False, default=False)
    _origins: tuple[str, ...] = field(init=False, default=())
    _wildcards: tuple[tuple[str, str], ...] = field(init=False, default=())
    _methods: frozenset[str] = field(init=False, default=frozenset())
    _headers_all: bool = field(init=False, default=False)
    _headers: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        origins = [o.lower() for o in self.allowed_origins] or ["*"]
        plain: list[str] = []
        wild: list[tuple[str, str]] = []
        for o in origins:
            if o == "*":
                object.__setattr__(self, "_origins_all", True)
            elif "*" in o:
                pre, _, post = o.partition("*")
                wild.append((pre, post))
            else:
                plain.append(o)
        object.__setattr__(self, "_origins", tuple(plain))
        object.__setattr__(self, "_wildcards", tuple(wild))
        methods = self.allowed_methods or _DEFAULT_METHODS
        object.__setattr__(self, "_methods", frozenset(m.upper() for m in methods))
        headers = list(self.allowed_headers) or list(_DEFAULT_HEADERS)
        if "*" in headers:
            object.__setattr__(self, "_headers_all", True)
        object.__setattr__(self, "_headers", frozenset(_canonical(h) for h in [*headers, "Origin"] if h != "*"))

    def origin_allowed(self, origin: str) -> bool:
        if self._origins_all:
            return True
        o = origin.lower()
        if o in self._origins:
            return True
        return any(len(o) >= len(pre) + len(post) and o.startswith(pre) and o.endswith(post)
                   for pre, post in self._wildcards)

    def method_allowed(self, method: str) -> bool:
        m = method.upper()
        return m == "OPTIONS" or m in self._methods

    def headers_allowed(self, requested: list[str]) -> bool:
        return self._headers_all or all(_canonical(h) in self._headers for h in requested)

    def _allow_origin(self, origin: str) -> str:
        return "*" if self._origins_all else origin

    def preflight(self, request: web.Request) -> web.Response:
        """The answer to a preflight request (always 204, headers only when everything is allowed)."""
        resp = web.Response(status=204)
        resp.headers.add("Vary", "Origin")
        resp.headers.add("Vary", "Access-Control-Request-Method")
        resp.headers.add("Vary", "Access-Control-Request-Headers")
        origin = request.headers.get("Origin", "")
        method = request.headers.get("Access-Control-Request-Method", "")
        raw = request.headers.get("Access-Control-Request-Headers", "")
        requested = [h.strip() for h in raw.split(",") if h.strip()]
        if not origin or not self.origin_allowed(origin) or not self.method_allowed(method):
            return resp
        if not self.headers_allowed(requested):
            return resp
        resp.headers["Access-Control-Allow-Origin"] = self._allow_origin(origin)
        resp.headers["Access-Control-Allow-Methods"] = method.upper()
        if requested:
            resp.headers["Access-Control-Allow-Headers"] = ", ".join(_canonical(h) for h in requested)
        if self.allow_credentials:
            resp.headers["Access-Control-Allow-Credentials"] = "true"
        seconds = int(self.max_age.total_seconds())
        if seconds > 0:
            resp.headers["Access-Control-Max-Age"] = str(seconds)
        return resp

    def decorate(self, request: web.Request, resp: web.StreamResponse) -> None:
        """Add CORS headers to the response of an actual (non-preflight) request."""
        resp.headers.add("Vary", "Origin")
        origin = request.headers.get("Origin", "")
        if not origin or not self.origin_allowed(origin) or not self.method_allowed(request.method):
            return
        resp.headers["Access-Control-Allow-Origin"] = self._allow_origin(origin)
        if self.exposed_headers:
            resp.headers["Access-Control-Expose-Headers"] = ", ".join(self.exposed_headers)
        if self.allow_credentials:
            resp.headers["Access-Control-Allow-Credentials"] = "true"

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
