"""The auth matrix: every route × (no credentials, wrong user, wrong password, right ones, tokens) on HTTP
and on HTTPS (a self-signed RSA certificate made here), with the real client against a real server."""

from __future__ import annotations

import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import jwt
import pytest
from test_restapi_fakes import FakeCluster, cid_of, new_peer, start_api
from tests.certs import make_cert

from pincluster.api.common.auth import TokenIssuer
from pincluster.api.rest.server import ROUTES, RestAPI
from pincluster.client import APIError, Client, TransportError
from pincluster.errors import ConfigError
from pincluster.types.models import PinOptions

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning"),
]

USERS = {"admin": "s3cret", "bob": "hunter2"}


@pytest.fixture(scope="module")
def cert() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as d:
        yield make_cert(d)


Req = tuple[str, str, list[tuple[str, str]], bytes | None, list[tuple[str, str]]]


def requests_for(c: FakeCluster) -> dict[str, Req]:
    """One valid request per route handler: method, path, query, body, headers."""
    pinned = cid_of(b"pinned")
    cid = str(pinned)
    mp = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
          b"Content-Type: application/octet-stream\r\n\r\nabc\r\n--B--\r\n")
    return {
        "id": ("GET", "/id", [], None, []),
        "version": ("GET", "/version", [], None, []),
        "peers": ("GET", "/peers", [], None, []),
        "peer_add": ("POST", "/peers", [], b'{"peer_id":"%s"}' % str(new_peer()).encode(), []),
        "peer_rm": ("DELETE", f"/peers/{c.others[-1]}", [], None, []),
        "add": ("POST", "/add", [], mp, [("Content-Type", "multipart/form-data; boundary=B")]),
        "allocations": ("GET", "/allocations", [], None, []),
        "allocation": ("GET", f"/allocations/{cid}", [], None, []),
        "pins": ("GET", "/pins", [("local", "false"), ("filter", ""), ("cids", "")], None, []),
        "recover": ("POST", f"/pins/{cid}/recover", [], b"", []),
        "recover_all": ("POST", "/pins/recover", [], b"", []),
        "status": ("GET", f"/pins/{cid}", [], None, []),
        "pin": ("POST", f"/pins/{cid_of(b'new')}", [], b"", []),
        "pin_path": ("POST", f"/pins/ipfs/{cid_of(b'new2')}", [], b"", []),
        "unpin": ("DELETE", f"/pins/{cid_of(b'gone')}", [], None, []),
        "unpin_path": ("DELETE", f"/pins/ipfs/{cid_of(b'gone2')}", [], None, []),
        "repo_gc": ("POST", "/ipfs/gc", [("local", "true")], b"", []),
        "graph": ("GET", "/health/graph", [], None, []),
        "alerts": ("GET", "/health/alerts", [], None, []),
        "bandwidth": ("GET", "/health/bandwidth", [], None, []),
        "metrics": ("GET", "/monitor/metrics/freespace", [], None, []),
        "metric_names": ("GET", "/monitor/metrics", [], None, []),
        "token": ("POST", "/token", [], b"", []),
        "health": ("GET", "/health", [], None, []),
        "openapi": ("GET", "/openapi.json", [], None, []),
    }


async def _status(cl: Client, req: Req) -> tuple[int, list[tuple[str, str]], bytes]:
    method, path, query, body, headers = req
    resp = await cl._send(method, path, query, body, headers)
    data = await resp.read()
    return resp.status, resp.headers, data


async def _matrix(a: RestAPI, c: FakeCluster, make: Callable[..., Client]) -> None:
    for extra in (b"pinned", b"gone", b"gone2"):
        await c.pin(cid_of(extra), PinOptions())
    reqs = requests_for(c)
    assert set(reqs) == {r.handler for r in ROUTES}, "every route is in the matrix"
    open_routes = {"health", "openapi"}
    bad = {
        "no credentials": (make(), "unauthorized: no auth provided"),
        "wrong user": (make(username="mallory", password="s3cret"), "unauthorized: access denied"),
        "wrong password": (make(username="admin", password="nope"), "unauthorized: access denied"),
        "empty password": (make(username="admin", password=""), "unauthorized: access denied"),
        "bad token": (make(token="abc.def.ghi"), "unauthorized: invalid token"),
    }
    good = make(username="admin", password="s3cret")
    try:
        for handler, req in reqs.items():
            for label, (cl, message) in bad.items():
                status, headers, data = await _status(cl, req)
                if handler in open_routes:
                    assert status in (200, 204), (handler, label, status)
                    continue
                assert status == 401, (handler, label, status, data)
                assert data == b'{"code":401,"message":"%s"}\n' % message.encode(), (handler, label)
                www = [v for k, v in headers if k == "www-authenticate"]
                if label == "no credentials":
                    assert www == ['Bearer realm="Restricted IPFS Cluster API"',
                                   'Basic realm="Restricted IPFS Cluster API"']
                elif label == "bad token":
                    assert www == ['Bearer realm="Restricted IPFS Cluster API", error="invalid_token"']
                else:
                    assert www == ['Basic realm="Restricted IPFS Cluster API"']
            status, _, data = await _status(good, req)
            assert status in (200, 204), (handler, status, data)
    finally:
        for cl, _ in bad.values():
            await cl.close()
        await good.close()


async def test_auth_matrix_http() -> None:
    a, c = await start_api(basic_auth_credentials=USERS)
    try:
        await _matrix(a, c, lambda **kw: Client(a.url, **kw))
    finally:
        await a.stop()


async def test_auth_matrix_https(cert: tuple[str, str]) -> None:
    cert_file, key_file = cert
    a, c = await start_api(basic_auth_credentials=USERS, ssl_cert_file=cert_file, ssl_key_file=key_file)
    try:
        assert a.url.startswith("https://")
        await _matrix(a, c, lambda **kw: Client(a.url, ca_file=cert_file, **kw))
        # plain HTTP against the TLS listener fails as a transport error; an untrusted cert too
        async with Client(a.url.replace("https", "http"), timeout=5) as cl:
            with pytest.raises((TransportError, APIError)):
                await cl.version()
        async with Client(a.url, username="admin", password="s3cret", timeout=5) as cl:
            with pytest.raises(TransportError):
                await cl.version()
        async with Client(a.url, username="admin", password="s3cret", verify=False) as cl:
            assert (await cl.version()).version == "1.1.6"
        # only TLS >= 1.2
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        async with Client(a.url, ssl_context=ctx, timeout=5) as cl:
            with pytest.raises(TransportError):
                await cl.version()
    finally:
        await a.stop()


async def test_tls_config_errors(cert: tuple[str, str]) -> None:
    with pytest.raises(ConfigError):
        await start_api(ssl_cert_file=cert[0])
    with pytest.raises(ConfigError, match="error loading TLS certificate/key"):
        await start_api(ssl_cert_file=cert[0], ssl_key_file=cert[0] + ".missing")


async def test_tokens() -> None:
    a, _ = await start_api(basic_auth_credentials=USERS, token_lifetime=timedelta(minutes=5))
    try:
        async with Client(a.url, username="bob", password="hunter2") as cl:
            token = await cl.token()
        claims = jwt.decode(token, "hunter2", algorithms=["HS256"])
        assert claims["iss"] == "bob" and time.time() + 250 < claims["exp"] <= time.time() + 301
        async with Client(a.url, token=token) as cl:
            assert (await cl.version()).version == "1.1.6"
            assert jwt.decode(await cl.token(), "hunter2", algorithms=["HS256"])["iss"] == "bob"
        # Go's tokens (no exp) are accepted; expired ones, wrong keys, unknown issuers and "none" are not
        go_token = TokenIssuer(USERS, timedelta(0)).issue("admin")
        assert "exp" not in jwt.decode(go_token, options={"verify_signature": False})
        expired = TokenIssuer(USERS, timedelta(seconds=10), clock=lambda: time.time() - 3600).issue("admin")
        forged = jwt.encode({"iss": "admin"}, "not-the-password-of-admin-at-all-x", algorithm="HS512")
        unknown = jwt.encode({"iss": "eve"}, "not-the-password-of-admin-at-all-x", algorithm="HS256")
        none_alg = jwt.encode({"iss": "admin"}, "", algorithm="none")
        async with Client(a.url, token=go_token) as cl:
            assert (await cl.version()).version == "1.1.6"
        for bad in (expired, forged, unknown, none_alg):
            async with Client(a.url, token=bad) as cl:
                with pytest.raises(APIError) as ei:
                    await cl.version()
                assert (ei.value.code, ei.value.message) == (401, "unauthorized: invalid token")
    finally:
        await a.stop()
    # without auth configured, /token is 401 "unauthorized"
    a, _ = await start_api()
    try:
        async with Client(a.url) as cl:
            with pytest.raises(APIError) as ei:
                await cl.token()
            assert (ei.value.code, ei.value.message) == (401, "unauthorized")
    finally:
        await a.stop()


def test_empty_credentials_map_is_a_config_error() -> None:
    from pincluster.api.common.settings import HTTPAPISettings

    with pytest.raises(ConfigError, match="basic_auth_credentials"):
        HTTPAPISettings(basic_auth_credentials={})
