"""CORS as Go's ``rs/cors`` 1.11 answers it: the one set of rules behind the REST and Pinning Service APIs
(IPFS Cluster 1.1.6 configures rs/cors 1.11.1 from ``cors_*``) and the embedded node's kubo RPC API (kubo 0.42
uses the same version with its own options). Both are compared with the Go programs answer for answer
(tests/integration/test_go_daemon.py, tests/integration/test_ipfs_api_guard.py).

rs/cors 1.11's rules, which older versions (and a reading of the CORS standard alone) get wrong in details
browsers see:

- origins are compared in lower case; a ``*`` inside a configured origin matches any middle part; ``*`` alone,
  or no origins configured, allows all (the answer then says ``*``);
- methods are compared exactly (``post`` is not ``POST``); OPTIONS is always allowed; none configured means
  GET, POST and HEAD;
- ``Access-Control-Request-Headers`` must list allowed names in lower case, sorted, each once (the Fetch
  standard sends them so); none configured means ``accept``, ``content-type``, ``x-requested-with``. A
  preflight that passes gets the request's header list back as it came;
- a preflight's ``Vary`` is one value, ``Origin, Access-Control-Request-Method, Access-Control-Request-Headers``.

A refused preflight is still a 204, without ``Access-Control-Allow-*``: the browser then does not send the
request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = ["CorsRules", "canonical_header"]

_DEFAULT_METHODS: Final = ("GET", "POST", "HEAD")
_DEFAULT_HEADERS: Final = ("accept", "content-type", "x-requested-with")
_PREFLIGHT_VARY: Final = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
_MAX_EMPTY_ELEMENTS: Final = 16
Headers = list[tuple[str, str]]


def canonical_header(name: str) -> str:
    """Go's ``http.CanonicalHeaderKey`` for token names: ``x-requested-with`` → ``X-Requested-With``."""
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.strip().split("-"))


@dataclass(frozen=True)
class CorsRules:
    """The options of an rs/cors handler; empty lists take rs/cors' defaults (see the module docstring)."""

    allowed_origins: Sequence[str] = ()
    allowed_methods: Sequence[str] = ()
    allowed_headers: Sequence[str] = ()
    exposed_headers: Sequence[str] = ()
    allow_credentials: bool = False
    max_age_seconds: int = 0
    _all_origins: bool = field(init=False, default=False)
    _origins: frozenset[str] = field(init=False, default=frozenset())
    _wildcards: tuple[tuple[str, str], ...] = field(init=False, default=())
    _methods: tuple[str, ...] = field(init=False, default=())
    _all_headers: bool = field(init=False, default=False)
    _header_pos: dict[str, int] = field(init=False, default_factory=dict)
    _exposed: str = field(init=False, default="")

    def __post_init__(self) -> None:
        origins = [o.lower() for o in self.allowed_origins]
        plain: list[str] = []
        wild: list[tuple[str, str]] = []
        for o in origins:
            if o == "*":
                plain, wild = [], []
                break
            pre, star, post = o.partition("*")
            if star:
                wild.append((pre, post))
            else:
                plain.append(o)
        every = not origins or "*" in origins
        object.__setattr__(self, "_all_origins", every)
        object.__setattr__(self, "_origins", frozenset(plain))
        object.__setattr__(self, "_wildcards", tuple(wild))
        object.__setattr__(self, "_methods", tuple(self.allowed_methods) or _DEFAULT_METHODS)
        headers = [h.lower() for h in self.allowed_headers] or list(_DEFAULT_HEADERS)
        object.__setattr__(self, "_all_headers", "*" in headers)
        object.__setattr__(self, "_header_pos", {h: i for i, h in enumerate(sorted(set(headers)))})
        object.__setattr__(self, "_exposed", ", ".join(canonical_header(h) for h in self.exposed_headers))

    def origin_allowed(self, origin: str) -> bool:
        if self._all_origins:
            return True
        o = origin.lower()
        return o in self._origins or any(
            len(o) >= len(pre) + len(post) and o.startswith(pre) and o.endswith(post) for pre, post in self._wildcards)

    def method_allowed(self, method: str) -> bool:
        return method == "OPTIONS" or method in self._methods

    def headers_accepted(self, values: Sequence[str]) -> bool:
        """rs/cors' ``SortedSet.Accepts`` over the ``Access-Control-Request-Headers`` values."""
        if self._all_headers:
            return True
        last = -1
        empty = 0
        for value in values:
            for raw in value.split(","):
                name = raw.strip(" \t")
                if not name:
                    empty += 1
                    if empty > _MAX_EMPTY_ELEMENTS:
                        return False
                    continue
                pos = self._header_pos.get(name, -1)
                if pos <= last:
                    return False
                last = pos
        return True

    def _allow_origin(self, origin: str) -> str:
        return "*" if self._all_origins else origin

    def preflight(self, origin: str, method: str, request_headers: Sequence[str] | None) -> Headers:
        """The headers of the 204 answering a preflight (``request_headers``: the request's
        ``Access-Control-Request-Headers`` values, None when it has none)."""
        out: Headers = [("Vary", _PREFLIGHT_VARY)]
        if not origin or not self.origin_allowed(origin) or not self.method_allowed(method):
            return out
        if request_headers is not None and not self.headers_accepted(request_headers):
            return out
        out += [("Access-Control-Allow-Origin", self._allow_origin(origin)), ("Access-Control-Allow-Methods", method)]
        if request_headers and request_headers[0]:
            out += [("Access-Control-Allow-Headers", v) for v in request_headers]
        if self.allow_credentials:
            out.append(("Access-Control-Allow-Credentials", "true"))
        if self.max_age_seconds:
            out.append(("Access-Control-Max-Age", str(max(0, self.max_age_seconds))))
        return out

    def actual(self, origin: str, method: str) -> Headers:
        """The CORS headers of the answer to any other request."""
        out: Headers = [("Vary", "Origin")]
        if not origin or not self.origin_allowed(origin) or not self.method_allowed(method):
            return out
        out.append(("Access-Control-Allow-Origin", self._allow_origin(origin)))
        if self._exposed:
            out.append(("Access-Control-Expose-Headers", self._exposed))
        if self.allow_credentials:
            out.append(("Access-Control-Allow-Credentials", "true"))
        return out
