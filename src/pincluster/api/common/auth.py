"""Basic and Bearer (JWT) authentication of the HTTP APIs (spec §1.6).

A request carries either ``Authorization: Basic`` with a configured user and password, or
``Authorization: Bearer <jwt>`` where the JWT is HMAC-signed (HS256/384/512) with the password of the user
named in its ``iss`` claim. Unlike Go, the tokens we issue carry an ``exp`` claim (``token_lifetime``),
so a leaked token stops working; tokens without ``exp`` (from Go) are still accepted.

Passwords are the HMAC keys, as in Go; PyJWT warns about keys shorter than 32 bytes, which we silence
because the protocol fixes the key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import jwt
from aiohttp import web

from pincluster.api.common.errors import ErrorBody, error_body, error_response

__all__ = ["REALM", "Authenticator", "TokenIssuer", "parse_basic", "parse_bearer"]

REALM = "Restricted IPFS Cluster API"
_VERIFIED_CACHE_SIZE = 1024
_ALGORITHMS = ["HS256", "HS384", "HS512"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_basic(header: str) -> tuple[str, str] | None:
    """Go's ``Request.BasicAuth``: ``Basic`` (any case) + base64 ``user:password``; None if malformed."""
    if len(header) < 6 or header[:6].lower() != "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = raw.partition(":")
    if not sep:
        return None
    return user, password


def parse_bearer(header: str) -> str | None:
    """The token of ``Bearer <token>`` (prefix matched case-insensitively), or None."""
    if len(header) < 7 or header[:7].lower() != "bearer ":
        return None
    token = header[7:].strip()
    return token or None


def _www(scheme: str, error: str = "") -> str:
    value = f'{scheme} realm="{REALM}"'
    if error:
        value += f', error="{error}"'
    return value


class TokenIssuer:
    """Signs and checks the JWTs of ``POST /token`` with the users' passwords."""

    def __init__(self, credentials: Mapping[str, str], lifetime: timedelta = timedelta(hours=24),
                 clock: Callable[[], float] = time.time) -> None:
        self._credentials = dict(credentials)
        self._lifetime = lifetime
        self._clock = clock
        # token -> (issuer, exp or None) of tokens found valid. Checking a JWT costs ~0.4 ms (two decodes and
        # an HMAC), more than the rest of a pin request; a client sends the same token with every request.
        # The signature of a token cannot change (the passwords are fixed), so only ``exp`` is re-checked.
        self._verified: dict[str, tuple[str, int | None]] = {}

    def issue(self, user: str) -> str:
        """An HS256 token for ``user`` (claims ``iss`` and, when the lifetime is not 0, ``exp``)."""
        password = self._credentials.get(user)
        if password is None:
            raise KeyError(user)
        claims: dict[str, object] = {"iss": user}
        if self._lifetime > timedelta(0):
            claims["exp"] = int(self._clock() + self._lifetime.total_seconds())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            return jwt.encode(claims, password, algorithm="HS256")

    def verify(self, token: str) -> str:
        """The issuer (user) of a valid token; raises ``jwt.InvalidTokenError`` otherwise."""
        hit = self._verified.get(token)
        if hit is not None:
            issuer, exp = hit
            if exp is not None and exp <= time.time():  # PyJWT's rule (leeway 0)
                del self._verified[token]
                raise jwt.ExpiredSignatureError("Signature has expired")
            return issuer
        issuer, claims = self._verify(token)
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            self._verified.clear()
        if set(claims) <= {"iss", "exp"}:  # other claims (nbf, iat, …) may be time-dependent: not cached
            exp = claims.get("exp")
            self._verified[token] = (issuer, None if exp is None else int(exp))
        return issuer

    def _verify(self, token: str) -> tuple[str, dict[str, Any]]:
        """The full check (signature, issuer, expiry): the issuer and the verified claims."""
        unverified = jwt.decode(token, options={"verify_signature": False})
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise jwt.InvalidTokenError("token has no issuer")
        password = self._credentials.get(issuer)
        if password is None:
            raise jwt.InvalidTokenError("unknown issuer")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            claims: dict[str, Any] = jwt.decode(token, password, algorithms=_ALGORITHMS, issuer=issuer,
                                                options={"verify_aud": False}, leeway=0)
        return issuer, claims


class Authenticator:
    """An aiohttp middleware enforcing Basic/Bearer auth when credentials are configured.

    ``OPTIONS`` requests and the paths in ``exempt`` (``GET`` only; the REST API exempts ``/health``) pass.
    ``error_body`` renders the 401 bodies (the Pinning Service API has its own error shape).
    """

    def __init__(
        self,
        credentials: Mapping[str, str] | None,
        issuer: TokenIssuer | None = None,
        exempt_get_paths: Sequence[str] = ("/health",),
        headers: Mapping[str, Sequence[str]] | None = None,
        error_body: ErrorBody = error_body,
    ) -> None:
        self.credentials = dict(credentials) if credentials is not None else None
        self.issuer = issuer or (TokenIssuer(self.credentials) if self.credentials else None)
        self._exempt = frozenset(exempt_get_paths)
        self._headers = headers
        self._error_body = error_body

    @property
    def enabled(self) -> bool:
        return self.credentials is not None

    def check_basic(self, user: str, password: str) -> bool:
        """Both non-empty and an exact match (compared in constant time)."""
        if not user or not password or self.credentials is None:
            return False
        expected = self.credentials.get(user)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def identify(self, request: web.Request) -> str | None:
        """The authenticated user of a request (Basic user, or a valid token's issuer), if any."""
        header = request.headers.get("Authorization", "")
        basic = parse_basic(header)
        if basic is not None:
            return basic[0] if self.check_basic(*basic) else None
        token = parse_bearer(header)
        if token is not None and self.issuer is not None:
            try:
                return self.issuer.verify(token)
            except jwt.InvalidTokenError:
                return None
        return None

    def _unauthorized(self, message: str, www: list[str]) -> web.Response:
        resp = error_response(401, message, self._headers, body=self._error_body)
        for value in www:
            resp.headers.add("WWW-Authenticate", value)
        return resp

    def check(self, request: web.Request) -> web.Response | None:
        """None when the request may go on (authenticated, exempt, or no credentials configured); else
        the 401 answer. The request chain of the HTTP APIs calls it (``http.request_chain``)."""
        if self.credentials is None or request.method == "OPTIONS":
            return None
        if request.method == "GET" and request.path in self._exempt:
            return None
        header = request.headers.get("Authorization", "")
        basic = parse_basic(header)
        token = parse_bearer(header)
        if basic is not None:
            if not self.check_basic(*basic):
                return self._unauthorized("unauthorized: access denied", [_www("Basic")])
        elif token is not None:
            try:
                assert self.issuer is not None
                self.issuer.verify(token)
            except jwt.InvalidTokenError:
                return self._unauthorized("unauthorized: invalid token", [_www("Bearer", "invalid_token")])
        else:
            return self._unauthorized("unauthorized: no auth provided", [_www("Bearer"), _www("Basic")])
        return None
