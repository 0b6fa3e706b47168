"""The IPFS proxy against an in-process fake cluster and a fake IPFS node (an aiohttp app on 127.0.0.1).

Covers every hijacked endpoint's shapes and errors, the header rules of spec §9.2, and the reverse proxy:
streaming both ways (proved by interleaving, not by timing), trailers relayed, hop-by-hop headers dropped,
errors passed through unchanged, a ``/unix/`` node address.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import ssl
import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.http_writer import StreamWriter
from test_restapi_fakes import FakeCluster
from tests.certs import make_cert

from pincluster.api.ipfsproxy.server import SERVER_HEADER, IPFSProxy
from pincluster.client.transport import Endpoint, Transport, TransportError
from pincluster.config.sections import IPFSProxyConfig
from pincluster.errors import Unavailable
from pincluster.types.cid import CID, RAW, sha256_multihash
from pincluster.types.models import GlobalRepoGC, IPFSRepoGC, IPFSRepoStat, Pin, PinOptions, RepoGC
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.status import PinMode

pytestmark = pytest.mark.timeout(30)

HELLO_CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"  # kubo's CID of b"hello world\n"


def raw_cid(data: bytes) -> CID:
    return CID.v1(RAW, sha256_multihash(data))


class ProxyCluster(FakeCluster):
    """The REST fake plus what only the proxy uses: repo/stat, pin updates, a GC with errors."""

    def __init__(self) -> None:
        super().__init__()
        self.gc_keys: dict[int, tuple[IPFSRepoGC, ...]] = {}
        self.gc_peer_error = ""

    async def pin(self, cid: CID, options: PinOptions) -> Pin:
        if options.pin_update is not None and options.pin_update != cid:
            return await self.pin_update(options.pin_update, cid, options)
        return await super().pin(cid, options)

    async def pin_update(self, from_cid: CID, to_cid: CID, options: PinOptions) -> Pin:
        old = await self.pin_get(from_cid)
        self.calls.append(("pin_update", (from_cid, to_cid)))
        self.pinset[to_cid] = old.replace(cid=to_cid, pin_update=from_cid)
        return self.pinset[to_cid]

    async def repo_stat(self, *, local: bool = False) -> IPFSRepoStat:
        return IPFSRepoStat(repo_size=100 * len(self.members), storage_max=1000 * len(self.members))

    async def repo_gc(self, *, local: bool = False) -> GlobalRepoGC:
        pm = {}
        for i, p in enumerate(self.members):
            pm[p] = RepoGC(peer=p, peername=f"p{i}", keys=self.gc_keys.get(i, ()),
                           error=self.gc_peer_error if i == 2 else "")
        return GlobalRepoGC(peer_map=pm)


class FakeNode:
    """A kubo RPC API double: records what reached it and answers like kubo."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.version_calls = 0
        self.gate = asyncio.Event()
        self.got_first_chunk = asyncio.Event()
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.app = app
        self.runner: web.AppRunner | None = None
        self.multiaddr = Multiaddr("/ip4/127.0.0.1/tcp/1")

    async def start(self, unix_path: str = "", ssl_context: ssl.SSLContext | None = None) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site: web.BaseSite
        if unix_path:
            site = web.UnixSite(self.runner, unix_path)
            await site.start()
            self.multiaddr = Multiaddr(f"/unix{unix_path}")
        else:
            site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.multiaddr = Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.seen.append((request.method, request.path_qs, dict(request.headers)))
        if request.method == "OPTIONS":
            if "evil" in request.headers.get("Origin", ""):  # an origin the node does not allow
                return web.Response(status=204, headers={"Vary": "Origin"})
            return web.Response(headers={
                "Access-Control-Allow-Origin": request.headers.get("Origin", ""), "Vary": "Origin",
                "Access-Control-Allow-Credentials": "true", "Access-Control-Allow-Methods": "POST"})
        if path == "/api/v0/version":
            self.version_calls += 1
            return web.json_response({"Version": "0.42.0"}, headers={
                "Access-Control-Expose-Headers": "X-Stream-Output, X-Chunked-Output", "X-Extra": "e1",
                "Server": "kubo/0.42.0"})
        if path == "/api/v0/cat":
            return await self.cat(request)
        if path == "/api/v0/broken":  # the node dies half-way through a body
            if request.query.get("chunked"):
                resp, write = await self.framed(request)
                await write(b"y" * 50000)
            else:
                resp = web.StreamResponse()
                resp.content_length = 100000
                await resp.prepare(request)
                await resp.write(b"y" * 50000)
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()
            return resp
        if path == "/api/v0/echo":
            return await self.echo(request)
        if path == "/api/v0/fail":
            return web.Response(status=500, body=b'{"Message":"no link named x","Code":0,"Type":"error"}\n',
                                content_type="application/json", headers={"Server": "kubo/0.42.0"})
        if path == "/api/v0/block/put":
            return await self.block_put(request)
        if path == "/api/v0/dag/put":
            data = await request.read()
            cid = raw_cid(data[-40:])
            return web.Response(text=json.dumps({"Cid": {"/": str(cid)}}) + "\n", content_type="application/json")
        if path == "/api/v0/resolve":
            arg = request.query["arg"]
            if arg.startswith("/ipns/"):
                return web.Response(status=500, text='{"Message":"could not resolve name","Code":0,"Type":"error"}')
            return web.json_response({"Path": "/ipfs/" + arg.split("/")[2]})
        return web.Response(status=404, text="404 page not found\n")

    async def framed(self, request: web.Request) -> tuple[web.StreamResponse, Any]:
        resp = web.StreamResponse()
        resp.headers["Trailer"] = "X-Stream-Error"
        resp.headers["X-Stream-Output"] = "1"
        writer = await resp.prepare(request)
        assert isinstance(writer, StreamWriter) and writer.chunked
        writer.chunked = False

        async def write(data: bytes) -> None:
            await resp.write(b"%x\r\n%b\r\n" % (len(data), data))

        return resp, write

    async def cat(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("size", "1000"))
        resp, write = await self.framed(request)
        block = b"x" * 65536
        sent = 0
        while sent < size:
            n = min(len(block), size - sent)
            await write(block[:n])
            sent += n
            if request.query.get("gate") and sent == n:
                await self.gate.wait()  # the client must have the first chunk before the rest exists
        trailer = b"X-Stream-Error: " + request.query["fail"].encode() + b"\r\n" if "fail" in request.query else b""
        await resp.write(b"0\r\n" + trailer + b"\r\n")
        await resp.write_eof()
        return resp

    async def echo(self, request: web.Request) -> web.StreamResponse:
        first = await request.content.readany()
        self.got_first_chunk.set()
        rest = await request.content.read()
        return web.Response(body=first + rest, content_type="application/octet-stream")

    async def block_put(self, request: web.Request) -> web.StreamResponse:
        reader = await request.multipart()
        lines = []
        while True:
            part = await reader.next()
            if part is None:
                break
            data = await part.read()  # type: ignore[union-attr]
            lines.append(json.dumps({"Key": str(raw_cid(data)), "Size": len(data)}))
        return web.Response(text="\n".join(lines) + "\n", content_type="application/json")


class Env:
    def __init__(self, proxy: IPFSProxy, cluster: ProxyCluster, node: FakeNode, clock: list[float]) -> None:
        self.proxy = proxy
        self.cluster = cluster
        self.node = node
        self.clock = clock
        host, port = proxy.addresses[0].tcp_host_port()
        self.transport = Transport(Endpoint(host=host, port=port), None, 10)

    async def call(self, method: str, target: str, headers: list[tuple[str, str]] | None = None,
                   body: bytes | AsyncIterator[bytes] | None = None) -> tuple[int, dict[str, str], bytes,
                                                                                dict[str, str]]:
        resp = await self.transport.request(method, target, headers or [], body)
        data = await resp.read()
        return resp.status, dict(resp.headers), data, dict(resp.trailers)

    async def post(self, target: str, **kw: Any) -> tuple[int, dict[str, str], bytes, dict[str, str]]:
        return await self.call("POST", "/api/v0/" + target, **kw)


async def make_env(unix_node: str = "", folder: str = "", node_tls: tuple[str, str] | None = None,
                   **cfg: Any) -> Env:
    node = FakeNode()
    server_ctx = client_ctx = None
    if node_tls is not None:
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(*node_tls)
        client_ctx = ssl.create_default_context(cafile=node_tls[0])
    await node.start(unix_node, server_ctx)
    clock = [1000.0]
    config = IPFSProxyConfig(listen_multiaddress=(Multiaddr("/ip4/127.0.0.1/tcp/0"),),
                             node_multiaddress=node.multiaddr, **cfg)
    cluster = ProxyCluster()
    proxy = IPFSProxy(cluster, config, folder, clock=lambda: clock[0], node_ssl_context=client_ctx)
    await proxy.start()
    return Env(proxy, cluster, node, clock)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = await make_env(extract_headers_extra=("X-Extra",))
    yield e
    await e.transport.close()
    await e.proxy.stop()
    await e.node.stop()


def kubo_err(body: bytes) -> str:
    doc = json.loads(body)
    assert doc["Code"] == 0 and doc["Type"] == "error"
    return str(doc["Message"])


def multipart(files: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = secrets.token_hex(8)
    out = bytearray()
    for name, data in files.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


# ------------------------------------------------------------------------------------------------ pin/*
async def test_pin_add_forms_modes_and_headers(env: Env) -> None:
    cid = raw_cid(b"a")
    status, headers, body, _ = await env.post(f"pin/add?arg={cid}", headers=[("Origin", "http://app.example")])
    assert status == 200 and json.loads(body) == {"Pins": [str(cid)]}
    assert headers["server"] == SERVER_HEADER and headers["content-type"] == "application/json"
    assert headers["access-control-allow-origin"] == "http://app.example"
    assert headers["access-control-allow-credentials"] == "true" and headers["vary"] == "Origin"
    assert "access-control-allow-methods" not in headers  # only the three CORS headers are copied
    assert headers["access-control-expose-headers"] == "X-Stream-Output, X-Chunked-Output"
    assert headers["x-extra"] == "e1"
    options = [("OPTIONS", "/api/v0/pin/add")]
    assert [(m, p) for m, p, _ in env.node.seen if m == "OPTIONS"] == options
    assert next(h for m, _, h in env.node.seen if m == "OPTIONS")["Access-Control-Request-Method"] == "POST"
    assert env.cluster.pinset[cid].mode is PinMode.RECURSIVE

    d1, d2, d3 = raw_cid(b"d1"), raw_cid(b"d2"), raw_cid(b"d3")
    await env.post(f"pin/add/{d1}?type=direct")
    await env.post(f"pin/add?arg=/ipfs/{d2}&recursive=false")
    status, _, body, _ = await env.post(f"pin/add?arg={d3}&name=named")
    assert status == 200
    assert env.cluster.pinset[d1].mode is PinMode.DIRECT and env.cluster.pinset[d2].mode is PinMode.DIRECT
    assert env.cluster.pinset[d3].name == "named" and env.cluster.pinset[d3].mode is PinMode.RECURSIVE
    m1, m2 = raw_cid(b"m1"), raw_cid(b"m2")
    status, _, body, _ = await env.post(f"pin/add?arg={m1}&arg={m2}")
    assert json.loads(body) == {"Pins": [str(m1), str(m2)]}


async def test_pin_add_errors(env: Env) -> None:
    status, headers, body, _ = await env.post("pin/add")
    assert status == 400 and kubo_err(body) == 'argument "ipfs-path" is required'
    assert headers["server"] == SERVER_HEADER
    status, _, body, _ = await env.post("pin/add?arg=not-a-cid")
    assert status == 500 and kubo_err(body).startswith("Error parsing IPFS Path:")
    status, _, body, _ = await env.post("pin/add?arg=/ipns/example.com")
    assert status == 500 and "could not resolve /ipns/example.com" in kubo_err(body)


async def test_pin_rm(env: Env) -> None:
    cid = raw_cid(b"rm")
    await env.post(f"pin/add?arg={cid}")
    status, _, body, _ = await env.post(f"pin/rm/{cid}")
    assert status == 200 and json.loads(body) == {"Pins": [str(cid)]}
    assert cid not in env.cluster.pinset
    status, _, body, _ = await env.post(f"pin/rm?arg={cid}")
    assert status == 500 and kubo_err(body) == "not pinned or pinned indirectly"


async def test_pin_ls_forms_and_type_filter(env: Env) -> None:
    r, d = raw_cid(b"r"), raw_cid(b"d")
    await env.post(f"pin/add?arg={r}")
    await env.post(f"pin/add?arg={d}&type=direct")
    status, headers, body, trailers = await env.post("pin/ls?stream=true")
    assert status == 200 and headers["trailer"] == "X-Stream-Error" and not trailers.get("x-stream-error")
    lines = [json.loads(x) for x in body.splitlines()]
    assert sorted(lines, key=lambda x: x["Cid"]) == sorted(
        [{"Cid": str(r), "Type": "recursive"}, {"Cid": str(d), "Type": "direct"}], key=lambda x: x["Cid"])
    status, _, body, _ = await env.post("pin/ls?s=true&type=direct")
    assert [json.loads(x) for x in body.splitlines()] == [{"Cid": str(d), "Type": "direct"}]
    status, headers, body, _ = await env.post("pin/ls")
    assert status == 200 and body.endswith(b"\n")
    assert json.loads(body) == {"Keys": {str(r): {"Type": "recursive"}, str(d): {"Type": "direct"}}}
    status, _, body, _ = await env.post("pin/ls?type=recursive")
    assert json.loads(body) == {"Keys": {str(r): {"Type": "recursive"}}}
    status, _, body, _ = await env.post("pin/ls?type=indirect")
    assert json.loads(body) == {"Keys": {}}
    status, _, body, _ = await env.post(f"pin/ls/{r}?stream=true")
    assert json.loads(body) == {"Cid": str(r), "Type": "recursive"}
    status, _, body, _ = await env.post(f"pin/ls?arg=/ipfs/{d}")
    assert json.loads(body) == {"Keys": {str(d): {"Type": "direct"}}}
    # asked for the other type, or not in the pinset: kubo's "not pinned" (the cluster connector keys on it)
    status, _, body, _ = await env.post(f"pin/ls?arg={d}&type=recursive&stream=true")
    assert status == 500 and kubo_err(body) == f"Error: path '{d}' is not pinned"
    missing = raw_cid(b"missing")
    status, _, body, _ = await env.post(f"pin/ls?arg={missing}")
    assert status == 500 and kubo_err(body) == f"Error: path '{missing}' is not pinned"
    status, _, body, _ = await env.post("pin/ls?type=bogus")
    assert status == 400 and "invalid type" in kubo_err(body)


async def test_pin_ls_failure_mid_stream_goes_to_the_trailer(env: Env) -> None:
    for i in range(5):
        env.cluster.pinset[raw_cid(b"%d" % i)] = Pin(cid=raw_cid(b"%d" % i))
    env.cluster.fail_after = 2
    status, _, body, trailers = await env.post("pin/ls?stream=true")
    assert status == 200 and len(body.splitlines()) == 2
    assert "did not answer" in trailers["x-stream-error"]
    status, _, body, trailers = await env.post("pin/ls")
    assert status == 200 and len(json.loads(body)["Keys"]) == 2  # still valid JSON
    assert "did not answer" in trailers["x-stream-error"]


async def test_pin_ls_large_pinset_streams_in_order(env: Env) -> None:
    cids = [raw_cid(b"big%d" % i) for i in range(3000)]
    for c in cids:
        env.cluster.pinset[c] = Pin(cid=c)
    status, _, body, _ = await env.post("pin/ls")
    assert status == 200
    assert list(json.loads(body)["Keys"]) == [str(c) for c in sorted(cids)]
    _, _, body, _ = await env.post("pin/ls?stream=true")
    assert len(body.splitlines()) == 3000


async def test_pin_update(env: Env) -> None:
    a, b = raw_cid(b"from"), raw_cid(b"to")
    await env.post(f"pin/add?arg={a}&name=keep")
    status, _, body, _ = await env.post("pin/update")
    assert status == 400 and kubo_err(body) == 'argument "from-path" is required'
    status, _, body, _ = await env.post(f"pin/update?arg={a}")
    assert status == 400 and kubo_err(body) == 'argument "to-path" is required'
    status, _, body, _ = await env.post(f"pin/update?arg=junk&arg={b}")
    assert status == 500 and kubo_err(body).startswith('error parsing "from-path" argument')
    status, _, body, _ = await env.post(f"pin/update?arg={a}&arg={b}&unpin=false")
    assert status == 200 and json.loads(body) == {"Pins": [str(a), str(b)]}
    assert a in env.cluster.pinset and env.cluster.pinset[b].name == "keep"
    c = raw_cid(b"third")
    status, _, body, _ = await env.post(f"pin/update?arg=/ipfs/{b}/sub&arg={c}")  # from resolved by the node
    assert json.loads(body) == {"Pins": [str(b), str(c)]}
    assert b not in env.cluster.pinset and c in env.cluster.pinset
    assert any(p.startswith("/api/v0/resolve?arg=") for _, p, _ in env.node.seen)
    status, _, body, _ = await env.post(f"pin/update?arg={c}&arg={c}")  # from == to: never unpinned
    assert status == 200 and c in env.cluster.pinset


# ------------------------------------------------------------------------------------------------ add
async def test_add_kubo_shapes(env: Env) -> None:
    body, ctype = multipart({"hello.txt": b"hello world\n"})
    status, headers, out, trailers = await env.post("add?progress=true", body=body,
                                                    headers=[("Content-Type", ctype)])
    assert status == 200 and headers["x-chunked-output"] == "1" and headers["server"] == SERVER_HEADER
    objs = [json.loads(x) for x in out.splitlines()]
    assert objs[-1] == {"Name": "hello.txt", "Hash": HELLO_CID, "Size": "20"}
    assert {"Name": "hello.txt", "Bytes": 12} in objs  # a progress event: no Hash, no Size
    assert not trailers.get("x-stream-error")
    assert CID.decode(HELLO_CID) in env.cluster.pinset

    env.cluster.pinset.clear()
    status, _, out, _ = await env.post("add?pin=false&stream-channels=false&trickle=true&cid-version=1",
                                       body=body, headers=[("Content-Type", ctype)])
    arr = json.loads(out)
    assert status == 200 and isinstance(arr, list) and arr[-1]["Hash"].startswith("baf")
    assert not env.cluster.pinset
    params = next(p for n, p in reversed(env.cluster.calls) if n == "add")
    assert params.no_pin and params.import_options.trickle


async def test_add_errors(env: Env) -> None:
    body, ctype = multipart({"x": b"x"})
    status, _, out, _ = await env.post("add?only-hash=true", body=body, headers=[("Content-Type", ctype)])
    assert status == 500 and kubo_err(out) == "only-hash is not supported when adding to cluster"
    assert not any(n == "add" for n, _ in env.cluster.calls)  # Go's QUIRK would add anyway
    status, _, out, _ = await env.post("add", body=b"plain", headers=[("Content-Type", "text/plain")])
    assert status == 500 and "isn't multipart/form-data" in kubo_err(out)
    status, _, out, _ = await env.post("add?layout=zigzag", body=body, headers=[("Content-Type", ctype)])
    assert status == 500 and kubo_err(out) == "error parsing options:layout parameter is invalid"
    status, _, out, trailers = await env.post("add?name=fail-pin", body=body, headers=[("Content-Type", ctype)])
    assert status == 200 and trailers["x-stream-error"] == "not enough peers to allocate CID"


# ------------------------------------------------------------------------------------------------ repo/*
async def test_repo_stat_sums_members(env: Env) -> None:
    status, headers, body, _ = await env.post("repo/stat?size-only=true")
    assert status == 200 and json.loads(body) == {"RepoSize": 300, "StorageMax": 3000}
    assert headers["server"] == SERVER_HEADER


async def test_repo_gc_errors_in_trailer_or_inline(env: Env) -> None:
    k1, k2 = raw_cid(b"k1"), raw_cid(b"k2")
    env.cluster.gc_keys = {0: (IPFSRepoGC(key=k1),), 1: (IPFSRepoGC(key=k2, error="busy"),)}
    env.cluster.gc_peer_error = "ipfs down"
    status, headers, body, trailers = await env.post("repo/gc")
    assert status == 200 and headers["trailer"] == "X-Stream-Error"
    assert [json.loads(x) for x in body.splitlines()] == [{"Key": {"/": str(k1)}}, {"Key": {"/": str(k2)}}]
    assert trailers["x-stream-error"] == "busy; p2: ipfs down;"  # h11 strips the trailing space
    status, _, body, trailers = await env.post("repo/gc?stream-errors=true")
    assert [json.loads(x) for x in body.splitlines()] == [
        {"Key": {"/": str(k1)}}, {"Key": {"/": str(k2)}, "Error": "busy"}, {"Error": "p2: ipfs down"}]
    assert not trailers.get("x-stream-error")


# ------------------------------------------------------------------------------------------------ block/dag put
async def test_block_put_pin_true_pins_each_block(env: Env) -> None:
    body, ctype = multipart({"b1": b"block one", "b2": b"block two"})
    status, headers, out, trailers = await env.post("block/put?pin=true", body=body,
                                                    headers=[("Content-Type", ctype)])
    assert status == 200 and headers["server"] == SERVER_HEADER
    keys = [json.loads(x)["Key"] for x in out.splitlines()]
    assert keys == [str(raw_cid(b"block one")), str(raw_cid(b"block two"))]
    assert {str(c) for c in env.cluster.pinset} == set(keys)
    assert any(p == "/api/v0/block/put?pin=true" for _, p, _ in env.node.seen)  # forwarded as-is
    assert not trailers.get("x-stream-error")


async def test_block_put_without_pin_is_plain_proxy(env: Env) -> None:
    body, ctype = multipart({"b1": b"unpinned block"})
    status, headers, out, _ = await env.post("block/put?pin=false", body=body, headers=[("Content-Type", ctype)])
    assert status == 200 and json.loads(out)["Key"] == str(raw_cid(b"unpinned block"))
    assert headers.get("server") != SERVER_HEADER and not env.cluster.pinset


async def test_block_put_pin_failure_reaches_trailer(env: Env) -> None:
    async def failing_pin(cid: CID, options: PinOptions) -> Pin:
        raise Unavailable("no peers to allocate to")

    env.cluster.pin = failing_pin  # type: ignore[method-assign]
    body, ctype = multipart({"b1": b"x1"})
    status, _, out, trailers = await env.post("block/put?pin=true", body=body, headers=[("Content-Type", ctype)])
    assert status == 200 and out == b"" and trailers["x-stream-error"] == "no peers to allocate to"


async def test_dag_put_pin_true_forwards_pin_false(env: Env) -> None:
    body, ctype = multipart({"node": b'{"a": 1}'})
    status, _, out, _ = await env.post("dag/put?store-codec=dag-cbor&pin=true", body=body,
                                       headers=[("Content-Type", ctype)])
    assert status == 200
    cid = CID.decode(json.loads(out)["Cid"]["/"])
    assert cid in env.cluster.pinset
    assert ("POST", "/api/v0/dag/put?store-codec=dag-cbor&pin=false") in [(m, p) for m, p, _ in env.node.seen]


# ------------------------------------------------------------------------------------------------ headers
async def test_extracted_headers_cached_for_ttl(env: Env) -> None:
    for _ in range(3):
        await env.post("repo/stat")
    assert env.node.version_calls == 1
    env.clock[0] += 301  # past the default 5 min TTL
    await env.post("repo/stat")
    assert env.node.version_calls == 2
    _, headers, _, _ = await env.post("repo/stat")  # no Origin: no preflight to the node
    assert "access-control-allow-origin" not in headers
    assert not any(m == "OPTIONS" for m, _, _ in env.node.seen)


async def test_headers_ttl_zero_is_forever_and_custom_path() -> None:
    e = await make_env(extract_headers_ttl=timedelta(0), extract_headers_path="/api/v0/version")
    try:
        await e.post("repo/stat")
        e.clock[0] += 10**6
        await e.post("repo/stat")
        assert e.node.version_calls == 1
    finally:
        await e.transport.close()
        await e.proxy.stop()
        await e.node.stop()


# ------------------------------------------------------------------------------------------------ reverse proxy
async def test_reverse_proxy_streams_response_and_relays_trailers(env: Env) -> None:
    resp = await env.transport.request("POST", "/api/v0/cat?size=2000000&gate=1", [])
    assert resp.status == 200 and resp.header("x-stream-output") == "1" and resp.header("trailer")
    it = resp.iter_body()
    first = await anext(it)  # arrives while the node still holds back the rest
    assert first and not env.node.gate.is_set()
    env.node.gate.set()
    rest = b"".join([c async for c in it])
    assert len(first) + len(rest) == 2000000
    assert resp.trailers == []
    status, _, body, trailers = await env.post("cat?size=100000&fail=block%20not%20found")
    assert status == 200 and len(body) == 100000
    assert trailers["x-stream-error"] == "block not found"


async def test_node_dying_mid_body_is_not_a_complete_answer(env: Env) -> None:
    status, _, body, trailers = await env.post("broken?chunked=1")
    assert status == 200 and len(body) == 50000
    assert trailers["x-stream-error"].startswith("ipfs proxy: the IPFS node broke the stream:")
    resp = await env.transport.request("POST", "/api/v0/broken", [])
    assert resp.status == 200 and resp.header("content-length") == "100000"
    with pytest.raises(TransportError):
        await resp.read()


async def test_reverse_proxy_streams_request_body(env: Env) -> None:
    sent_rest = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await asyncio.wait_for(env.node.got_first_chunk.wait(), 5)  # the node reads before we send more
        sent_rest.set()
        for _ in range(50):
            yield b"b" * 65536

    status, _, out, _ = await env.post("echo", body=body(), headers=[("Content-Type", "application/octet-stream")])
    assert status == 200 and sent_rest.is_set() and out == b"a" * 1000 + b"b" * 65536 * 50


async def test_reverse_proxy_headers_and_errors_pass_through(env: Env) -> None:
    status, headers, body, _ = await env.post("fail", headers=[
        ("TE", "trailers"), ("Proxy-Authorization", "Basic x"), ("X-Custom", "kept"), ("Connection", "keep-alive")])
    assert status == 500 and body == b'{"Message":"no link named x","Code":0,"Type":"error"}\n'
    assert headers["server"] == "kubo/0.42.0"
    _, _, got = env.node.seen[-1]
    assert got["X-Custom"] == "kept" and got["X-Forwarded-For"] == "127.0.0.1"
    assert "Proxy-Authorization" not in got and "TE" not in got
    status, _, body, _ = await env.post("nonexistent")
    assert status == 404 and body == b"404 page not found\n"
    # hijacked paths with other methods, and other prefixes, are forwarded
    status, _, _, _ = await env.call("DELETE", "/api/v0/pin/add?arg=x")
    assert status == 404 and env.node.seen[-1][:2] == ("DELETE", "/api/v0/pin/add?arg=x")
    status, _, _, _ = await env.call("OPTIONS", "/api/v0/pin/ls")
    assert status == 200 and env.node.seen[-1][0] == "OPTIONS"
    status, _, body, _ = await env.post("version")
    assert status == 200 and json.loads(body) == {"Version": "0.42.0"}


async def test_node_down_gives_502() -> None:
    e = await make_env()
    await e.node.stop()
    try:
        status, _, body, _ = await e.post("version")
        assert status == 502 and b"cannot reach the IPFS node" in body
        status, _, body, _ = await e.post("repo/stat")  # hijacked answers still work without the node
        assert status == 200
    finally:
        await e.transport.close()
        await e.proxy.stop()


async def test_unix_node_address_and_log_file() -> None:
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "api.sock")
        e = await make_env(unix_node=sock, log_file="proxy.log", folder=d)
        try:
            status, _, body, _ = await e.post("version")
            assert status == 200 and json.loads(body)["Version"] == "0.42.0"
            status, _, _, _ = await e.post("repo/stat")
            assert status == 200
        finally:
            await e.transport.close()
            await e.proxy.stop()
            await e.node.stop()
        lines = Path(d, "proxy.log").read_text().splitlines()
        assert any('"POST /api/v0/version HTTP/1.1" 200' in line for line in lines)


async def test_node_https() -> None:
    with tempfile.TemporaryDirectory() as d:
        e = await make_env(node_tls=make_cert(d), node_https=True, extract_headers_extra=("X-Extra",))
        try:
            status, _, body, _ = await e.post("cat?size=300000&fail=late")
            assert status == 200 and len(body) == 300000
            status, headers, _, _ = await e.post("repo/stat")
            assert status == 200 and headers["x-extra"] == "e1"  # headers learned over HTTPS too
        finally:
            await e.transport.close()
            await e.proxy.stop()
            await e.node.stop()
        plain = await make_env(node_tls=make_cert(d))  # an HTTPS node spoken to in plain HTTP fails cleanly
        try:
            status, _, _, _ = await plain.post("version")
            assert status in (400, 502)
        finally:
            await plain.transport.close()
            await plain.proxy.stop()
            await plain.node.stop()


def test_from_config() -> None:
    cfg = IPFSProxyConfig(log_file="px.log")
    proxy = IPFSProxy.from_config(ProxyCluster(), cfg, "/cfg")
    assert proxy.upstream.endpoint.port == 5001 and proxy.cfg is cfg and proxy.log_file == "/cfg/px.log"


# ------------------------------------------------------------------------------------------------ cross-site
async def test_get_and_put_go_to_the_node_not_to_the_cluster(env: Env) -> None:
    """Go's proxy pins on a GET, which any web page can send (an ``<img>``); kubo refuses GET and PUT, so
    the proxy leaves them to the node."""
    d = raw_cid(b"get")
    for method in ("GET", "PUT"):
        _, headers, _, _ = await env.call(method, f"/api/v0/pin/add?arg={d}")
        assert (method, f"/api/v0/pin/add?arg={d}") in [(m, q) for m, q, _ in env.node.seen]
        assert headers.get("server") != SERVER_HEADER
    assert d not in env.cluster.pinset


async def test_cross_site_requests_are_refused_before_they_run(env: Env) -> None:
    """An origin the node does not allow (its answer to a preflight has no Access-Control-Allow-Origin), as
    ``Origin`` or ``Referer``, and a browser's POST naming no origin, get kubo's 403; nothing is pinned."""
    cid = raw_cid(b"csrf")
    for headers in ([("Origin", "http://evil.example")], [("Referer", "http://evil.example/page")],
                    [("Origin", "http://app.example"), ("Referer", "http://evil.example/page")],
                    [("Referer", "::not a url")], [("User-Agent", "Mozilla/5.0 (X11)")]):
        status, got, body, _ = await env.post(f"pin/add?arg={cid}", headers=headers)
        assert (status, body) == (403, b"403 - Forbidden\n"), headers
        assert got["x-content-type-options"] == "nosniff"
    for target in (f"pin/rm?arg={cid}", "repo/gc", "add"):
        status, _, _, _ = await env.post(target, headers=[("Origin", "http://evil.example")])
        assert status == 403
    assert cid not in env.cluster.pinset
    # allowed: the node's origins, a desktop app's browser, non-browser clients
    for headers in ([("Origin", "http://app.example")], [("Referer", "http://app.example/webui")],
                    [("User-Agent", "Mozilla/5.0 Electron/30")], [("User-Agent", "go-ipfs-api")]):
        env.node.seen.clear()
        status, _, _, _ = await env.post(f"pin/add?arg={cid}", headers=headers)
        assert status == 200, headers
        preflights = [h for m, _, h in env.node.seen if m == "OPTIONS"]
        assert len(preflights) <= 1  # one preflight serves the check and the copied CORS headers
    assert cid in env.cluster.pinset


async def test_a_node_that_cannot_answer_the_preflight_refuses_the_origin(env: Env) -> None:
    await env.node.stop()
    status, _, body, _ = await env.post(f"pin/add?arg={raw_cid(b'down')}", headers=[("Origin", "http://app.example")])
    assert (status, body) == (403, b"403 - Forbidden\n")
