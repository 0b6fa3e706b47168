"""kubo's cross-site request rules for its RPC API: CORS answers and the CSRF checks.

The RPC API can delete pins, collect garbage and add content, and any web page the user opens can send a
POST to ``127.0.0.1:5001``: a browser sends a "simple" cross-site POST without asking first. kubo therefore
refuses, with ``403 - Forbidden``, a request whose ``Origin`` (or, without one, ``Referer``) is not an allowed
origin, and a POST from a browser (``User-Agent: Mozilla…``) that carries neither. The allowed origins are
``API.HTTPHeaders["Access-Control-Allow-Origin"]`` plus the API's own localhost origins and the IPFS Companion
extension. This module holds those rules as go-ipfs-cmds 0.16 and rs/cors 1.11 (kubo 0.42) apply them, so that
the embedded node and the IPFS proxy answer as kubo does (compared with a real kubo daemon in
tests/integration/test_ipfs_api_guard.py).
"""

from __future__ import annotations

import base64
import functools
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from pincluster.cors import CorsRules, canonical_header

__all__ = [
    "ALLOW",
    "API_ORIGIN_ENV",
    "AUTH_DENIED_TEXT",
    "EXPOSED_HEADERS",
    "FORBIDDEN_TEXT",
    "METHOD_NOT_ALLOWED_TEXT",
    "CorsPolicy",
    "RpcAuthorizations",
    "auth_header",
    "go_http_error",
    "origins_to_check",
    "referer_origin",
]

#: go-ipfs-cmds' ``AllowedExposedHeaders``: sent as both ``Access-Control-Allow-Headers`` and
#: ``Access-Control-Expose-Headers`` on every command answer, so that browser code can read the stream kind.
EXPOSED_HEADERS: Final = "X-Stream-Output, X-Chunked-Output, X-Content-Length"
FORBIDDEN_TEXT: Final = "403 - Forbidden\n"
METHOD_NOT_ALLOWED_TEXT: Final = "405 - Method Not Allowed\n"
#: kubo's deprecated environment variable that adds one allowed origin (before ``API.HTTPHeaders`` existed).
API_ORIGIN_ENV: Final = "API_ORIGIN"
#: kubo's answer (403) to a request that ``API.Authorizations`` does not let through.
AUTH_DENIED_TEXT: Final = ("Kubo RPC Access Denied: Please provide a valid authorization token as defined in the "
                           "API.Authorizations configuration.\n")
#: The ``Allow`` header of kubo's answers to OPTIONS and to other methods than POST.
ALLOW: Final = "OPTIONS, POST"

_ACAO: Final = "Access-Control-Allow-Origin"
_ACAM: Final = "Access-Control-Allow-Methods"
_ACAC: Final = "Access-Control-Allow-Credentials"
_LOCALHOST_ORIGINS: Final = (
    "http://127.0.0.1:<port>", "https://127.0.0.1:<port>", "http://[::1]:<port>", "https://[::1]:<port>",
    "http://localhost:<port>", "https://localhost:<port>",
)
_COMPANION_ORIGINS: Final = (
    "chrome-extension://nibjojkomfdiaoajekhjakgkdhaomnch",  # ipfs-companion
    "chrome-extension://hjoieblefckbooibpepigmacodalfndh",  # ipfs-companion-beta
)
#: What Go's ``url.Parse`` refuses in a host: a ``%`` without two hex digits, or escaping an ASCII byte (but ``%25``)
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})|%(?!25)[0-7][0-9A-Fa-f]")
#: kubo's allowed request headers (``cfg.AddAllowedHeaders`` in kubo's ``commandsOption``).
_HEADERS: Final = ("Origin", "Accept", "Content-Type", "X-Requested-With")


def go_http_error(status: int, text: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """Go's ``http.Error``, which kubo's refusals use: plain text, ``X-Content-Type-Options: nosniff``."""
    resp = web.Response(status=status, text=text, content_type="text/plain", headers=headers)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


@dataclass(frozen=True)
class CorsPolicy:
    """What the API allows cross-site, from ``API.HTTPHeaders`` and the port it listens on.

    ``origins`` is the list go-ipfs-cmds' checks compare exactly (``*`` allows all); rs/cors, which writes the
    ``Access-Control-*`` answers, compares lower-cased and understands one ``*`` inside an origin."""

    origins: tuple[str, ...]
    methods: tuple[str, ...] = ("POST",)
    credentials: bool = False
    #: Other ``API.HTTPHeaders`` entries: added to every command answer.
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_http_headers(cls, http_headers: Mapping[str, Sequence[str]], port: int | None,
                          env_origin: str = "") -> CorsPolicy:
        """kubo's ``commandsOption``: the configured headers, then the origin of the deprecated ``API_ORIGIN``
        environment variable (``env_origin``), then the default origins, with ``<port>`` set."""
        origins: list[str] = []
        methods: list[str] = ["POST"]
        credentials = False
        extra: list[tuple[str, str]] = []
        for name, values in http_headers.items():
            key = canonical_header(name)
            if key == _ACAO:
                origins = list(values)
            elif key == _ACAM:
                methods = list(values)
            elif key == _ACAC:
                for v in values:
                    credentials = v.lower() == "true"
            else:
                extra += [(key, v) for v in values]
        if env_origin:
            origins.append(env_origin)
        origins += [*_LOCALHOST_ORIGINS, *_COMPANION_ORIGINS]
        if not methods:
            methods = ["GET", "POST", "PUT"]
        if port is not None:
            origins = [o.replace("<port>", str(port)) for o in origins]
        return cls(tuple(origins), tuple(methods), credentials, tuple(extra))

    # -- go-ipfs-cmds: the 403 decision ------------------------------------------------------------------------
    def allows(self, origin: str) -> bool:
        """Whether ``origin`` may call the API (exact comparison, as go-ipfs-cmds' ``allowOrigin``)."""
        return any(o == "*" or o == origin for o in self.origins)

    # -- rs/cors: the Access-Control-* answers -------------------------------------------------------------
    @functools.cached_property
    def rules(self) -> CorsRules:
        return CorsRules(allowed_origins=self.origins, allowed_methods=self.methods, allowed_headers=_HEADERS,
                         allow_credentials=self.credentials)

    def preflight(self, headers: Mapping[str, str], request_headers: Sequence[str]) -> list[tuple[str, str]]:
        """The answer headers to a preflight (OPTIONS with ``Access-Control-Request-Method``); a refusal is an
        answer without ``Access-Control-Allow-Origin``. ``request_headers`` are the request's
        ``Access-Control-Request-Headers`` values (none: the header was not sent)."""
        return self.rules.preflight(headers.get("Origin", ""), headers.get("Access-Control-Request-Method", ""),
                                    list(request_headers) or None)

    def actual(self, origin: str, method: str) -> list[tuple[str, str]]:
        """The CORS headers of an answer to any other request."""
        return self.rules.actual(origin, method)


def referer_origin(referer: str) -> str | None:
    """``scheme://host`` of a ``Referer``, or None where Go's ``url.Parse`` fails (a leading ``:``, control
    characters, a bad escape or IPv6 literal)."""
    if referer.startswith(":") or any(ord(c) < 0x20 or c == "\x7f" for c in referer):
        return None
    try:
        parts = urllib.parse.urlsplit(referer)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return None
    if " " in parts.netloc or _BAD_ESCAPE.search(parts.netloc):
        return None  # Go: invalid character " " in host name; invalid URL escape "%zz"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def origins_to_check(method: str, headers: Mapping[str, str]) -> list[str] | None:
    """go-ipfs-cmds' ``allowOrigin``, ``allowReferer`` and ``allowUserAgent``: the origins the request says it
    comes from (its ``Origin``, its ``Referer``'s), each of which must be allowed; None when it is refused
    whatever is allowed (a ``Referer`` that does not parse; a browser's POST that names no origin)."""
    out: list[str] = []
    origin = headers.get("Origin", "")
    if origin:
        out.append(origin)
    referer = headers.get("Referer", "")
    if referer:
        ref = referer_origin(referer)
        if ref is None:
            return None
        out.append(ref)
    if method == "POST" and not origin and not referer:
        agent = headers.get("User-Agent", "")
        if agent.startswith("Mozilla") and "Electron" not in agent:
            return None
    return out


# --- API.Authorizations ---------------------------------------------------------------------------------------
def auth_header(secret: str) -> str:
    """kubo's ``config.ConvertAuthSecret``: the ``Authorization`` header value a secret stands for.

    ``bearer:TOKEN`` and a bare ``TOKEN`` are ``Bearer TOKEN``; ``basic:USER:PASSWORD`` is ``Basic`` and its
    base64, ``basic:BASE64`` is ``Basic BASE64``. Another ``type:`` gives "" (kubo then ignores the secret)."""
    if not secret:
        return ""
    _kind, sep, value = secret.partition(":")
    if not sep:
        return "Bearer " + secret
    if secret.startswith("basic:"):
        return "Basic " + (base64.b64encode(value.encode()).decode() if ":" in value else value)
    if secret.startswith("bearer:"):
        return "Bearer " + value
    return ""


@dataclass(frozen=True)
class RpcAuthorizations:
    """kubo's ``API.Authorizations`` (``withAuthSecrets``): when any is configured, a command runs only if the
    request's ``Authorization`` header is exactly one of theirs and its path starts with one of that user's
    ``AllowedPaths`` (``/api/v0`` allows every command); ``/api/v0/version`` needs only a valid header. No
    authorization configured: every request may go on (to the cross-site checks)."""

    #: ``Authorization`` header value → (user, allowed path prefixes)
    by_header: Mapping[str, tuple[str, tuple[str, ...]]]

    @classmethod
    def from_scopes(cls, scopes: Mapping[str, tuple[str, Sequence[str]]]) -> RpcAuthorizations:
        """``scopes``: user → (AuthSecret, AllowedPaths), as validated by the node's config."""
        return cls({header: (user, tuple(paths)) for user, (secret, paths) in scopes.items()
                    if (header := auth_header(secret))})

    def allows(self, authorization: str, path: str) -> bool:
        if not self.by_header:
            return True
        scope = self.by_header.get(authorization)
        if scope is None:
            return False
        return path == "/api/v0/version" or any(path.startswith(prefix) for prefix in scope[1])

    def header_for(self, path: str) -> str | None:
        """A configured ``Authorization`` value that ``path`` (and so every command under it) is allowed with;
        None when no authorization is configured or none covers it. The cluster's connector uses it to reach
        its own embedded node."""
        return next((h for h, (_, paths) in sorted(self.by_header.items(), key=lambda kv: kv[1][0])
                     if any(path.startswith(p) for p in paths)), None)
