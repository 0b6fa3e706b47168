"""The TLS context of the HTTP APIs from ``ssl_cert_file``/``ssl_key_file`` (spec §1.7): TLS ≥ 1.2 and, for
TLS 1.2, the RSA suites Go's server and client agree on (TLS 1.3 suites are OpenSSL's defaults)."""

from __future__ import annotations

import ssl

from pincluster.errors import ConfigError

__all__ = ["TLS12_CIPHERS", "server_ssl_context"]

#: OpenSSL names of Go's ``ECDHE_RSA_WITH_AES_256_GCM_SHA384``, ``ECDHE_RSA_WITH_AES_256_CBC_SHA``,
#: ``RSA_WITH_AES_256_GCM_SHA384`` and ``RSA_WITH_AES_256_CBC_SHA``.
TLS12_CIPHERS = "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-SHA:AES256-GCM-SHA384:AES256-SHA"


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context; raises :class:`ConfigError` naming the files when they cannot be loaded."""
    if not cert_file or not key_file:
        raise ConfigError("ssl_cert_file", "restapi: missing TLS configuration: set ssl_cert_file and ssl_key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.set_ciphers(TLS12_CIPHERS)
    except ssl.SSLError:  # an OpenSSL build without some of them: keep its secure defaults
        pass
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "ssl_cert_file", f"error loading TLS certificate/key ({cert_file}, {key_file}): {exc}"
        ) from None
    return ctx
