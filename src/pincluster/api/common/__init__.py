"""Pieces shared by the HTTP APIs (REST, IPFS proxy, Pinning Service): settings, auth, CORS, NDJSON streams
with trailers, error bodies, TLS and request log lines. Each is a small aiohttp middleware or helper, so the
three servers behave the same way at the edges."""

from pincluster.api.common.auth import Authenticator, TokenIssuer
from pincluster.api.common.cors import CORSPolicy
from pincluster.api.common.errors import error_response, status_for
from pincluster.api.common.settings import HTTPAPISettings
from pincluster.api.common.stream import ErrorSink, stream_ndjson

__all__ = [
    "Authenticator",
    "CORSPolicy",
    "ErrorSink",
    "HTTPAPISettings",
    "TokenIssuer",
    "error_response",
    "status_for",
    "stream_ndjson",
]
