"""The settings of an HTTP API (spec §7.3.4), independent of where they come from.

``api.restapi`` and ``api.pinsvcapi`` share this schema; :meth:`HTTPAPISettings.from_config` takes either
section object (anything with the same attributes) plus the config folder, against which relative file
paths are resolved.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from pincluster.api.common.cors import CORSPolicy
from pincluster.api.common.http import ListenOptions, Timeouts
from pincluster.errors import ConfigError
from pincluster.types.multiaddr import Multiaddr

__all__ = ["DEFAULT_CORS_EXPOSED", "DEFAULT_TOKEN_LIFETIME", "HTTPAPIConfigLike", "HTTPAPISettings"]

DEFAULT_CORS_EXPOSED: tuple[str, ...] = ("Content-Type", "X-Stream-Output", "X-Chunked-Output", "X-Content-Length")
#: Lifetime of tokens from ``POST /token``. Go issues tokens that never expire; we do not (see docs).
DEFAULT_TOKEN_LIFETIME = timedelta(hours=24)


class HTTPAPIConfigLike(Protocol):
    """The attributes of ``RestAPIConfig``/``PinSvcAPIConfig`` this package reads."""

    @property
    def http_listen_multiaddress(self) -> tuple[Multiaddr, ...]: ...
    @property
    def ssl_cert_file(self) -> str: ...
    @property
    def ssl_key_file(self) -> str: ...
    @property
    def read_timeout(self) -> timedelta: ...
    @property
    def read_header_timeout(self) -> timedelta: ...
    @property
    def write_timeout(self) -> timedelta: ...
    @property
    def idle_timeout(self) -> timedelta: ...
    @property
    def max_header_bytes(self) -> int: ...
    @property
    def basic_auth_credentials(self) -> Mapping[str, str] | None: ...
    @property
    def http_log_file(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, tuple[str, ...]]: ...
    @property
    def cors_allowed_origins(self) -> tuple[str, ...]: ...
    @property
    def cors_allowed_methods(self) -> tuple[str, ...]: ...
    @property
    def cors_allowed_headers(self) -> tuple[str, ...]: ...
    @property
    def cors_exposed_headers(self) -> tuple[str, ...]: ...
    @property
    def cors_allow_credentials(self) -> bool: ...
    @property
    def cors_max_age(self) -> timedelta: ...


def _resolve(path: str, config_dir: str | None) -> str:
    if not path or os.path.isabs(path) or config_dir is None:
        return path
    return os.path.join(config_dir, path)


@dataclass(frozen=True)
class HTTPAPISettings:
    """Everything an HTTP API server needs, with spec defaults (REST API port 9094).

    File paths here are already resolved (absolute, or relative to the working directory).
    ``token_lifetime`` is not a Go key: 0 gives Go's never-expiring tokens.
    """

    listen: tuple[Multiaddr, ...] = field(default_factory=lambda: (Multiaddr("/ip4/127.0.0.1/tcp/9094"),))
    ssl_cert_file: str = ""
    ssl_key_file: str = ""
    read_timeout: timedelta = timedelta(0)
    read_header_timeout: timedelta = timedelta(seconds=5)
    write_timeout: timedelta = timedelta(0)
    idle_timeout: timedelta = timedelta(minutes=2)
    max_header_bytes: int = 4096
    basic_auth_credentials: Mapping[str, str] | None = None
    http_log_file: str = ""
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cors_allowed_origins: tuple[str, ...] = ("*",)
    cors_allowed_methods: tuple[str, ...] = ("GET",)
    cors_allowed_headers: tuple[str, ...] = ()
    cors_exposed_headers: tuple[str, ...] = DEFAULT_CORS_EXPOSED
    cors_allow_credentials: bool = True
    cors_max_age: timedelta = timedelta(0)
    token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME

    def __post_init__(self) -> None:
        if not self.listen:
            raise ConfigError("http_listen_multiaddress", "is empty: give at least one address to listen on")
        if bool(self.ssl_cert_file) != bool(self.ssl_key_file):
            raise ConfigError(
                "ssl_cert_file", "and ssl_key_file must be set together (restapi: missing TLS configuration)"
            )
        if self.basic_auth_credentials is not None and not self.basic_auth_credentials:
            raise ConfigError("basic_auth_credentials", "is empty: use null to disable authentication")
        if self.max_header_bytes < 0:
            raise ConfigError("max_header_bytes", "must be 0 (default 4096) or more")
        if self.token_lifetime < timedelta(0):
            raise ConfigError("token_lifetime", "must be 0 (no expiry) or positive")

    @property
    def tls(self) -> bool:
        return bool(self.ssl_cert_file)

    def listen_options(self, logger: logging.Logger, access_log: logging.Logger) -> ListenOptions:
        """Where and how the server of these settings listens (TLS when a certificate is configured)."""
        from pincluster.api.common.tls import server_ssl_context

        ssl_ctx = server_ssl_context(self.ssl_cert_file, self.ssl_key_file) if self.tls else None
        return ListenOptions(self.listen, logger, access_log, ssl_ctx, self.idle_timeout.total_seconds(),
                             self.http_log_file, timeouts=Timeouts.of(self))

    def cors_policy(self) -> CORSPolicy:
        """The CORS policy of these settings (the REST and Pinning Service APIs share the keys)."""
        return CORSPolicy(
            allowed_origins=self.cors_allowed_origins,
            allowed_methods=self.cors_allowed_methods,
            allowed_headers=self.cors_allowed_headers,
            exposed_headers=self.cors_exposed_headers,
            allow_credentials=self.cors_allow_credentials,
            max_age=self.cors_max_age,
        )

    @property
    def effective_max_header_bytes(self) -> int:
        """Go treats 0 as the default and never goes below 4096."""
        return max(4096, self.max_header_bytes)

    @classmethod
    def from_config(
        cls, cfg: HTTPAPIConfigLike, config_dir: str | None = None, **overrides: Any
    ) -> HTTPAPISettings:
        """Settings from an ``api.restapi``/``api.pinsvcapi`` section; relative file paths are taken from
        ``config_dir`` (the config folder), as Go does."""
        kw: dict[str, Any] = {
            "listen": tuple(cfg.http_listen_multiaddress),
            "ssl_cert_file": _resolve(cfg.ssl_cert_file, config_dir),
            "ssl_key_file": _resolve(cfg.ssl_key_file, config_dir),
            "read_timeout": cfg.read_timeout,
            "read_header_timeout": cfg.read_header_timeout,
            "write_timeout": cfg.write_timeout,
            "idle_timeout": cfg.idle_timeout,
            "max_header_bytes": cfg.max_header_bytes,
            "basic_auth_credentials": (
                dict(cfg.basic_auth_credentials) if cfg.basic_auth_credentials is not None else None
            ),
            "http_log_file": _resolve(cfg.http_log_file, config_dir),
            "headers": {k: tuple(v) for k, v in cfg.headers.items()},
            "cors_allowed_origins": tuple(cfg.cors_allowed_origins),
            "cors_allowed_methods": tuple(cfg.cors_allowed_methods),
            "cors_allowed_headers": tuple(cfg.cors_allowed_headers),
            "cors_exposed_headers": tuple(cfg.cors_exposed_headers),
            "cors_allow_credentials": cfg.cors_allow_credentials,
            "cors_max_age": cfg.cors_max_age,
            "token_lifetime": getattr(cfg, "token_lifetime", DEFAULT_TOKEN_LIFETIME),
        }
        kw.update(overrides)
        return cls(**kw)
