"""Unit tests of the kubo RPC client against an in-process fake kubo (aiohttp server on 127.0.0.1:0).

The fake records every request, so these tests pin down the exact kubo calls and arguments of spec §8,
and can misbehave on purpose (stalls, errors, truncated streams) in ways a real kubo rarely does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp import web

from pincluster.errors import InvalidInput, NotFound, Timeout, Unavailable
from pincluster.ipfsconn.interface import IPFSBadRequest, IPFSConnector, IPFSError, pin_mode_args
from pincluster.ipfsconn.ipfshttp import IPFSHTTPConnector, UnpinDisabled
from pincluster.types.cid import CID, RAW, sha256_multihash
from pincluster.types.codec import to_json
from pincluster.types.models import IPFSRepoStat
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.status import IPFSPinStatus

pytestmark = pytest.mark.timeout(60)

CID_A = CID.v1(RAW, sha256_multihash(b"a"))
CID_B = CID.v1(RAW, sha256_multihash(b"b"))
PEER = "12D3KooWLR4KKA6xfW6ArNgnGP6RZbjwV7xYh3mznzQ6h8BFoPXr"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakeKubo:
    """Routes ``/api/v0/<path>`` to handlers; records (path, query items) of every call."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    calls: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    port: int = 0

    def route(self, path: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.handlers[path] = fn
            return fn

        return deco

    def json(self, path: str, body: Any, status: int = 200) -> None:
        async def h(_: web.Request) -> web.StreamResponse:
            return web.json_response(body, status=status)

        self.handlers[path] = h

    def paths(self) -> list[str]:
        return [p for p, _ in self.calls]

    @property
    def multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}"


async def _ndjson(request: web.Request, objs: list[Any], delay: float = 0.0) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.content_type = "application/json"
    await resp.prepare(request)
    for o in objs:
        await resp.write(web.json_response(o).body + b"\n")  # type: ignore[operator]
        if delay:
            await asyncio.sleep(delay)
    await resp.write_eof()
    return resp


@pytest.fixture
async def kubo() -> AsyncIterator[FakeKubo]:
    fake = FakeKubo()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405, text="405 - Method Not Allowed")
        path = request.match_info["path"]
        fake.calls.append((path, list(request.query.items())))
        handler = fake.handlers.get(path)
        if handler is None:
            return web.Response(status=404, text="404 page not found")
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/api/v0/{path:.*}", dispatch)
    runner = web.AppRunner(app, handler_cancellation=True)  # a client hang-up cancels slow handlers
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = runner.addresses[0][1]
    yield fake
    await runner.cleanup()


def conn(fake: FakeKubo, **kw: Any) -> IPFSHTTPConnector:
    kw.setdefault("ipfs_request_timeout", 5.0)
    kw.setdefault("pin_timeout", 5.0)
    return IPFSHTTPConnector(fake.multiaddr, **kw)


def not_pinned(cid: CID) -> dict[str, Any]:
    return {"Message": f"path '{cid}' is not pinned", "Code": 0, "Type": "error"}


# ---------------------------------------------------------------------------- small types


def test_pin_status_parsing_and_requirements() -> None:
    s = IPFSPinStatus.from_string
    assert s("recursive") is IPFSPinStatus.RECURSIVE
    assert s("direct") is IPFSPinStatus.DIRECT
    assert s("indirect through QmX") is IPFSPinStatus.INDIRECT
    assert s("") is IPFSPinStatus.BUG and s("weird") is IPFSPinStatus.BUG
    assert IPFSPinStatus.RECURSIVE.is_pinned(-1) and IPFSPinStatus.RECURSIVE.is_pinned(3)
    assert not IPFSPinStatus.RECURSIVE.is_pinned(0)
    assert IPFSPinStatus.DIRECT.is_pinned(0) and not IPFSPinStatus.DIRECT.is_pinned(-1)
    assert not IPFSPinStatus.INDIRECT.is_pinned(-1) and not IPFSPinStatus.UNPINNED.is_pinned(0)
    assert pin_mode_args(-1) == {"recursive": "true"}
    assert pin_mode_args(0) == {"recursive": "false"}
    assert pin_mode_args(2) == {"recursive": "true", "max-depth": "2"}


def test_constructor_validates() -> None:
    with pytest.raises(InvalidInput, match="pin_timeout"):
        IPFSHTTPConnector(pin_timeout=-1)
    with pytest.raises(InvalidInput, match="informer_trigger_interval"):
        IPFSHTTPConnector(informer_trigger_interval=-2)
    with pytest.raises(InvalidInput, match="connect_swarms_delay"):
        IPFSHTTPConnector(connect_swarms_delay=-1)
    with pytest.raises(InvalidInput):
        IPFSHTTPConnector("/ip4/1.2.3.4/udp/5")
    assert isinstance(IPFSHTTPConnector(), IPFSConnector)


# ---------------------------------------------------------------------------- errors


async def test_unreachable_node_names_the_address() -> None:
    # A port nobody listens on: bind, note the port, close.
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    async with IPFSHTTPConnector(f"/ip4/127.0.0.1/tcp/{port}") as c:
        with pytest.raises(Unavailable) as ei:
            await c.id()
    msg = str(ei.value)
    assert msg.startswith("ipfshttp: error getting IPFS ID:")
    assert "connection refused" in msg and f"127.0.0.1:{port}" in msg
    assert not isinstance(ei.value, Timeout)
    ident = await IPFSHTTPConnector(f"/ip4/127.0.0.1/tcp/{port}").id_or_error()
    assert ident.id is None and "connection refused" in ident.error
    assert msgspec.json.decode(to_json(ident)) == {"addresses": None, "error": ident.error}


async def test_kubo_errors_are_surfaced(kubo: FakeKubo) -> None:
    kubo.json("id", {"Message": "boom happened", "Code": 0, "Type": "error"}, status=500)
    kubo.json("version", {"Message": "bad arg", "Code": 1, "Type": "error"}, status=400)
    async with conn(kubo) as c:
        with pytest.raises(IPFSError) as ei:
            await c.id()
        assert str(ei.value) == "IPFS error (id). Code: 500. Message: boom happened"
        assert ei.value.message == "boom happened" and ei.value.http_status == 500
        with pytest.raises(IPFSBadRequest) as eb:
            await c.version()
        assert isinstance(eb.value, InvalidInput)
        with pytest.raises(IPFSError) as eu:
            await c.repo_stat()  # no handler: 404 plain text
        assert str(eu.value) == (
            "IPFS request failed (is it running?) (repo/stat?size-only=true). Code 404: 404 page not found"
        )


async def test_request_timeout(kubo: FakeKubo) -> None:
    @kubo.route("id")
    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.json_response({})

    async with conn(kubo, ipfs_request_timeout=0.3) as c:
        t0 = time.monotonic()
        with pytest.raises(Timeout, match=r"getting IPFS ID.*0\.3s \(ipfs_request_timeout\)"):
            await c.id()
        assert time.monotonic() - t0 < 2


async def test_rate_limited_after_many_transport_failures() -> None:
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    async with IPFSHTTPConnector(f"/ip4/127.0.0.1/tcp/{port}") as c:
        t0 = time.monotonic()
        for _ in range(11):
            with pytest.raises(Unavailable):
                await c.id()
        fast = time.monotonic() - t0
        t1 = time.monotonic()
        for _ in range(3):
            with pytest.raises(Unavailable):
                await c.id()
        limited = time.monotonic() - t1
    assert fast < 1.0
    assert limited >= 1.9  # 1 request per second once limited


# ---------------------------------------------------------------------------- id, ready


async def test_id_skips_bad_addresses(kubo: FakeKubo) -> None:
    kubo.json("id", {"ID": PEER, "Addresses": ["/ip4/127.0.0.1/tcp/4001", "/garbage/x"]})
    async with conn(kubo) as c:
        ident = await c.id()
    assert str(ident.id) == PEER
    assert ident.addresses == (Multiaddr("/ip4/127.0.0.1/tcp/4001"),)
    assert msgspec.json.decode(to_json(ident)) == {"id": PEER, "addresses": ["/ip4/127.0.0.1/tcp/4001"], "error": ""}


async def test_wait_ready_retries_until_id_answers(kubo: FakeKubo) -> None:
    answers = iter([500, 500, 200])

    @kubo.route("id")
    async def flaky(_: web.Request) -> web.StreamResponse:
        status = next(answers)
        if status != 200:
            return web.json_response({"Message": "starting", "Code": 0, "Type": "error"}, status=500)
        return web.json_response({"ID": PEER, "Addresses": []})

    async with conn(kubo) as c:
        assert not c.ready.is_set()
        ident = await c.wait_ready(interval=0.01)
        assert c.ready.is_set() and str(ident.id) == PEER
    assert kubo.paths() == ["id", "id", "id"]


# ---------------------------------------------------------------------------- pin


def pin_ls_handler(kubo: FakeKubo, pinned: dict[str, str]) -> None:
    @kubo.route("pin/ls")
    async def ls(request: web.Request) -> web.StreamResponse:
        arg = request.query.get("arg")
        typ = request.query.get("type", "all")
        if arg is not None:
            t = pinned.get(arg)
            if t is None or (typ != "all" and t != typ):
                return web.json_response(not_pinned(CID.decode(arg)), status=500)
            return await _ndjson(request, [{"Cid": arg, "Type": t}])
        return await _ndjson(request, [{"Cid": c, "Type": t} for c, t in pinned.items() if typ in ("all", t)])


async def test_pin_follows_progress_and_args(kubo: FakeKubo) -> None:
    pinned: dict[str, str] = {}
    pin_ls_handler(kubo, pinned)

    @kubo.route("pin/add")
    async def add(request: web.Request) -> web.StreamResponse:
        arg = request.query["arg"]
        pinned[arg] = "recursive" if request.query["recursive"] == "true" else "direct"
        return await _ndjson(request, [{"Progress": 1}, {"Progress": 1}, {"Progress": 3}, {"Pins": [arg]}])

    seen: list[int] = []
    async with conn(kubo) as c:
        await c.pin(CID_A, -1, progress_cb=seen.append)
        await c.pin(CID_A, -1)  # already pinned: no pin/add
        await c.pin(CID_B, 0)
        assert await c.pin_ls_cid(CID_B, 0) is IPFSPinStatus.DIRECT
        assert await c.pin_ls_cid(CID_B, -1) is IPFSPinStatus.UNPINNED
        await c.pin(CID.v1(RAW, sha256_multihash(b"c")), 5)
    assert seen == [1, 3]
    adds = [dict(q) for p, q in kubo.calls if p == "pin/add"]
    assert adds[0] == {"arg": str(CID_A), "recursive": "true", "progress": "true"}
    assert adds[1] == {"arg": str(CID_B), "recursive": "false", "progress": "true"}
    assert adds[2]["max-depth"] == "5" and adds[2]["recursive"] == "true"
    assert len(adds) == 3
    ls_calls = [dict(q) for p, q in kubo.calls if p == "pin/ls"]
    assert ls_calls[0] == {"stream": "true", "arg": str(CID_A), "type": "recursive"}
    assert {"stream": "true", "arg": str(CID_B), "type": "direct"} in ls_calls


async def test_pin_timeout_counts_from_last_progress(kubo: FakeKubo) -> None:
    pin_ls_handler(kubo, {})

    @kubo.route("pin/add")
    async def add(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(1, 9):  # 0.8 s of steady progress: longer than pin_timeout in total
            await resp.write(b'{"Progress":%d}\n' % i)
            await asyncio.sleep(0.1)
        for _ in range(30):  # then the counter stops moving (kubo keeps reporting it)
            await resp.write(b'{"Progress":8}\n')
            await asyncio.sleep(0.1)
        return resp

    async with conn(kubo, pin_timeout=0.4) as c:
        t0 = time.monotonic()
        with pytest.raises(Timeout, match=r"no progress for 0\.4s \(pin_timeout\) after 8 blocks"):
            await c.pin(CID_A)
        took = time.monotonic() - t0
    assert 1.0 <= took < 2.5, took  # > 2 × pin_timeout: the clock restarts on progress


async def test_pin_with_slow_steady_progress_succeeds(kubo: FakeKubo) -> None:
    pin_ls_handler(kubo, {})

    @kubo.route("pin/add")
    async def add(request: web.Request) -> web.StreamResponse:
        objs: list[Any] = [{"Progress": i} for i in range(1, 10)]
        return await _ndjson(request, [*objs, {"Pins": [request.query["arg"]]}], delay=0.1)

    async with conn(kubo, pin_timeout=0.3) as c:
        await c.pin(CID_A)  # 1 s in total, never 0.3 s without progress


async def test_zero_timeout_means_no_limit(kubo: FakeKubo) -> None:
    pin_ls_handler(kubo, {})

    @kubo.route("pin/add")
    async def add(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.3)  # no progress at all for a while
        return await _ndjson(request, [{"Pins": [request.query["arg"]]}])

    async with conn(kubo, pin_timeout=0, ipfs_request_timeout=0) as c:
        await c.pin(CID_A)


def test_from_config() -> None:
    from datetime import timedelta

    from pincluster.config.sections import IPFSHTTPConfig

    cfg = IPFSHTTPConfig(
        node_multiaddress=Multiaddr("/ip4/127.0.0.1/tcp/5555"),
        pin_timeout=timedelta(seconds=7),
        unpin_disable=True,
        informer_trigger_interval=3,
    )
    c = IPFSHTTPConnector.from_config(cfg)
    assert str(c.node_multiaddress) == "/ip4/127.0.0.1/tcp/5555"
    assert c.pin_timeout == 7 and c.ipfs_request_timeout == 300 and c.unpin_timeout == 3 * 3600
    assert c.unpin_disable and c.informer_trigger_interval == 3 and c.connect_swarms_delay == 30


async def test_pin_unconfirmed_stream_is_an_error(kubo: FakeKubo) -> None:
    pin_ls_handler(kubo, {})

    @kubo.route("pin/add")
    async def add(request: web.Request) -> web.StreamResponse:
        # kubo failed mid-way: the error went to the X-Stream-Error trailer, the body just ends.
        return await _ndjson(request, [{"Progress": 1}])

    async with conn(kubo) as c:
        with pytest.raises(IPFSError, match="without confirming the pin"):
            await c.pin(CID_A)


async def test_pin_inline_error_object(kubo: FakeKubo) -> None:
    pin_ls_handler(kubo, {})

    @kubo.route("pin/add")
    async def add(request: web.Request) -> web.StreamResponse:
        err = {"Message": "merkledag: not found", "Code": 0, "Type": "error"}
        return await _ndjson(request, [{"Progress": 1}, err])

    async with conn(kubo) as c:
        with pytest.raises(IPFSError, match="merkledag: not found"):
            await c.pin(CID_A)


async def test_pin_update_and_origins(kubo: FakeKubo) -> None:
    pinned = {str(CID_A): "recursive"}
    pin_ls_handler(kubo, pinned)
    connected: list[str] = []

    @kubo.route("swarm/connect")
    async def connect(request: web.Request) -> web.StreamResponse:
        connected.append(request.query["arg"])
        return web.json_response({"Strings": ["ok"]})

    @kubo.route("pin/update")
    async def update(request: web.Request) -> web.StreamResponse:
        args = request.query.getall("arg")
        pinned[args[1]] = "recursive"
        return web.json_response({"Pins": args})

    origins = [Multiaddr(f"/ip4/10.0.0.{i}/tcp/4001/p2p/{PEER}") for i in range(12)]
    async with conn(kubo) as c:
        await c.pin(CID_B, pin_update=CID_A, origins=origins)
        for _ in range(100):
            if len(connected) >= 10:
                break
            await asyncio.sleep(0.01)
    upd = [q for p, q in kubo.calls if p == "pin/update"]
    assert upd == [[("arg", str(CID_A)), ("arg", str(CID_B)), ("unpin", "false")]]
    assert "pin/add" not in kubo.paths()
    assert sorted(connected) == sorted(str(o) for o in origins[:10])
    assert pinned[str(CID_B)] == "recursive"


async def test_unpin(kubo: FakeKubo) -> None:
    rm_answers = iter(
        [
            web.json_response({"Pins": [str(CID_A)]}),
            web.json_response({"Message": "not pinned or pinned indirectly", "Code": 0, "Type": "error"}, status=500),
            web.json_response({"Message": "disk on fire", "Code": 0, "Type": "error"}, status=500),
        ]
    )

    @kubo.route("pin/rm")
    async def rm(_: web.Request) -> web.StreamResponse:
        return next(rm_answers)

    async with conn(kubo) as c:
        await c.unpin(CID_A)
        await c.unpin(CID_A)
        with pytest.raises(IPFSError, match="disk on fire"):
            await c.unpin(CID_A)
    assert kubo.calls[0] == ("pin/rm", [("arg", str(CID_A))])
    async with conn(kubo, unpin_disable=True) as c:
        with pytest.raises(UnpinDisabled, match="ipfs unpinning is disallowed by configuration on this peer"):
            await c.unpin(CID_A)
    assert len(kubo.calls) == 3


async def test_informer_trigger_every_n_operations(kubo: FakeKubo) -> None:
    pin_ls_handler(kubo, {})
    kubo.json("pin/rm", {"Pins": []})

    @kubo.route("pin/add")
    async def add(request: web.Request) -> web.StreamResponse:
        return await _ndjson(request, [{"Pins": [request.query["arg"]]}])

    fired = 0

    async def trigger() -> None:
        nonlocal fired
        fired += 1

    async with conn(kubo, informer_trigger_interval=2, informer_trigger=trigger) as c:
        await c.pin(CID_A)
        await c.unpin(CID_A)
        await c.pin(CID_B)
        await c.unpin(CID_B)
        await c.unpin(CID_B)
        await asyncio.sleep(0.05)
    assert fired == 2


# ---------------------------------------------------------------------------- pin/ls


async def test_pin_ls_lists_recursive_and_direct(kubo: FakeKubo) -> None:
    pin_ls_handler(kubo, {str(CID_A): "recursive", str(CID_B): "direct"})
    async with conn(kubo) as c:
        got = [x async for x in c.pin_ls()]
        with pytest.raises(InvalidInput, match="invalid pin type filter"):
            _ = [x async for x in c.pin_ls(["bogus"])]
    assert got == [(CID_A, IPFSPinStatus.RECURSIVE), (CID_B, IPFSPinStatus.DIRECT)]
    assert [dict(q)["type"] for p, q in kubo.calls if p == "pin/ls"] == ["recursive", "direct"]


async def test_pin_ls_streams(kubo: FakeKubo) -> None:
    """The first pin reaches the consumer while kubo is still producing the rest."""
    release = asyncio.Event()
    total = 20000

    @kubo.route("pin/ls")
    async def ls(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'{"Cid":"%s","Type":"recursive"}\n' % str(CID_A).encode())
        await release.wait()
        line = b'{"Cid":"%s","Type":"recursive"}\n' % str(CID_B).encode()
        for _ in range(total // 1000):
            await resp.write(line * 1000)
        await resp.write_eof()
        return resp

    async with conn(kubo) as c:
        n = 0
        async for cid, status in c.pin_ls(["recursive"]):
            if n == 0:
                assert cid == CID_A and status is IPFSPinStatus.RECURSIVE
                release.set()
            n += 1
    assert n == total + 1


async def test_pin_ls_idle_timeout_and_bad_line(kubo: FakeKubo) -> None:
    @kubo.route("pin/ls")
    async def ls(request: web.Request) -> web.StreamResponse:
        if request.query["type"] == "recursive":
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(b'{"Cid":"%s","Type":"recursive"}\n' % str(CID_A).encode())
            await asyncio.sleep(3)
            return resp
        return await _ndjson(request, [{"Cid": "not-a-cid", "Type": "direct"}])

    async with conn(kubo, ipfs_request_timeout=0.3) as c:
        got: list[CID] = []
        with pytest.raises(Timeout, match="listing IPFS pins"):
            async for cid, _ in c.pin_ls(["recursive"]):
                got.append(cid)
                await asyncio.sleep(0.5)  # a slow consumer does not count against the node
        assert got == [CID_A]
        with pytest.raises(IPFSError, match="error decoding ipfs pin"):
            _ = [x async for x in c.pin_ls(["direct"])]


async def test_pin_ls_cid_checks_answer(kubo: FakeKubo) -> None:
    @kubo.route("pin/ls")
    async def ls(request: web.Request) -> web.StreamResponse:
        return await _ndjson(request, [{"Cid": str(CID_B), "Type": "recursive"}])

    async with conn(kubo) as c:
        with pytest.raises(IPFSError, match="expected"):
            await c.pin_ls_cid(CID_A)
        # the same multihash in another CID form is accepted
        assert await c.pin_ls_cid(CID_B.to_v1()) is IPFSPinStatus.RECURSIVE


# ---------------------------------------------------------------------------- misc calls


async def test_swarm_config_repo_resolve(kubo: FakeKubo) -> None:
    kubo.json("swarm/peers", {"Peers": [{"Addr": "/ip4/1.2.3.4/tcp/1", "Peer": PEER}, {"Peer": "junk"}]})
    kubo.json("config/show", {"Datastore": {"StorageMax": "10GB", "GCPeriod": "1h"}, "Bootstrap": []})
    kubo.json("repo/stat", {"RepoSize": 100, "StorageMax": 1000, "NumObjects": 0})
    kubo.json("resolve", {"Path": f"/ipfs/{CID_B}"})
    async with conn(kubo) as c:
        assert [str(p) for p in await c.swarm_peers()] == [PEER]
        assert await c.config_key("Datastore/StorageMax") == "10GB"
        assert await c.config_key("Bootstrap") == []
        with pytest.raises(NotFound):
            await c.config_key("Datastore/Nope")
        with pytest.raises(InvalidInput):
            await c.config_key("Bootstrap/x")
        with pytest.raises(InvalidInput):
            await c.config_key("")
        assert await c.repo_stat() == IPFSRepoStat(repo_size=100, storage_max=1000)
        assert await c.free_space() == 900 and await c.repo_size() == 100
        n_before = len(kubo.calls)
        assert await c.resolve(str(CID_A)) == CID_A
        assert await c.resolve(f"/ipfs/{CID_A}") == CID_A
        assert len(kubo.calls) == n_before  # answered locally
        assert await c.resolve(f"/ipfs/{CID_A}/dir/file") == CID_B
        assert await c.resolve("/ipns/example.com") == CID_B
        with pytest.raises(InvalidInput):
            await c.resolve("/foo/bar")
        with pytest.raises(InvalidInput):
            await c.resolve("/ipfs/notacid/x")
    resolve_q = [q for p, q in kubo.calls if p == "resolve"]
    assert resolve_q[0] == [("arg", f"/ipfs/{CID_A}/dir/file")]
    assert ("size-only", "true") in next(q for p, q in kubo.calls if p == "repo/stat")


async def test_connect_swarms_best_effort(kubo: FakeKubo) -> None:
    @kubo.route("swarm/connect")
    async def connect(request: web.Request) -> web.StreamResponse:
        if "10.0.0.2" in request.query["arg"]:
            return web.json_response({"Message": "failure: dial", "Code": 0, "Type": "error"}, status=500)
        return web.json_response({"Strings": ["ok"]})

    kubo.json("id", {"ID": PEER, "Addresses": []})
    addrs = [Multiaddr(f"/ip4/10.0.0.{i}/tcp/4001/p2p/{PEER}") for i in range(1, 4)]

    async def source() -> list[Multiaddr]:
        return addrs

    async with conn(kubo, connect_swarms_delay=0.05) as c:
        assert await c.connect_swarms(addrs) == 2
        assert await c.connect_swarms_when_ready(source) == 2
    async with conn(kubo, connect_swarms_delay=0) as c:
        assert await c.connect_swarms_when_ready(source) == 0
    # the multiaddr is URL-escaped in the query
    assert kubo.calls[0] == ("swarm/connect", [("arg", str(addrs[0]))])


async def test_repo_gc_stream(kubo: FakeKubo) -> None:
    @kubo.route("repo/gc")
    async def gc(request: web.Request) -> web.StreamResponse:
        assert request.query["stream-errors"] == "true"
        return await _ndjson(request, [{"Key": {"/": str(CID_A)}}, {"Key": None, "Error": "could not remove X"}])

    async with conn(kubo) as c:
        got = [k async for k in c.repo_gc()]
    assert [(k.key, k.error) for k in got] == [(CID_A, ""), (None, "could not remove X")]
    assert msgspec.json.decode(to_json(got[0])) == {"key": str(CID_A)}
    assert msgspec.json.decode(to_json(got[1])) == {"key": None, "error": "could not remove X"}


# ---------------------------------------------------------------------------- blocks


def _block_put_handler(kubo: FakeKubo, store: dict[str, bytes], *, ack: Callable[[int, str], str | None]) -> None:
    @kubo.route("block/put")
    async def put(request: web.Request) -> web.StreamResponse:
        reader = await request.multipart()
        resp = web.StreamResponse()
        await resp.prepare(request)
        i = 0
        while True:
            part = await reader.next()
            if part is None:
                break
            assert part.name == "file"  # type: ignore[union-attr]
            assert part.headers["Content-Type"] == "application/octet-stream"
            data = await part.read()  # type: ignore[union-attr]
            name = part.filename or ""  # type: ignore[union-attr]
            store[name] = bytes(data)
            key = ack(i, str(CID.v1(RAW, sha256_multihash(bytes(data)))))
            if key is not None:
                await resp.write(b'{"Key":"%s","Size":%d}\n' % (key.encode(), len(data)))
            i += 1
        await resp.write_eof()
        return resp


def _blocks(n: int) -> list[tuple[CID, bytes]]:
    out = []
    for i in range(n):
        data = f"block number {i}".encode() * 50
        out.append((CID.v1(RAW, sha256_multihash(data)), data))
    return out


async def _aiter(items: list[tuple[CID, bytes]]) -> AsyncIterator[tuple[CID, bytes]]:
    for it in items:
        yield it


async def test_block_stream(kubo: FakeKubo) -> None:
    store: dict[str, bytes] = {}
    _block_put_handler(kubo, store, ack=lambda i, k: k)
    blocks = _blocks(50)
    async with conn(kubo) as c:
        assert await c.block_stream(_aiter(blocks)) == 50
        assert await c.block_stream(_aiter([])) == 0
    assert store == {str(cid): data for cid, data in blocks}
    q = dict(next(q for p, q in kubo.calls if p == "block/put"))
    assert q == {"cid-codec": "raw", "mhtype": "sha2-256", "mhlen": "32", "pin": "false", "allow-big-block": "true"}
    assert len([p for p in kubo.paths() if p == "block/put"]) == 1


async def test_block_stream_detects_missing_and_wrong_acks(kubo: FakeKubo) -> None:
    store: dict[str, bytes] = {}
    _block_put_handler(kubo, store, ack=lambda i, k: None if i >= 3 else k)
    async with conn(kubo) as c:
        with pytest.raises(IPFSError, match="acknowledged 3 of 5 blocks"):
            await c.block_stream(_aiter(_blocks(5)))
    _block_put_handler(kubo, store, ack=lambda i, k: str(CID_A) if i == 1 else k)
    async with conn(kubo) as c:
        with pytest.raises(IPFSError, match="expected"):
            await c.block_stream(_aiter(_blocks(3)))


async def test_block_stream_source_failure_propagates(kubo: FakeKubo) -> None:
    _block_put_handler(kubo, {}, ack=lambda i, k: k)

    async def failing() -> AsyncIterator[tuple[CID, bytes]]:
        for b in _blocks(2):
            yield b
        raise InvalidInput("adder: chunker exploded")

    async with conn(kubo) as c:
        with pytest.raises(InvalidInput, match="chunker exploded"):
            await c.block_stream(failing())


async def test_block_put_and_get(kubo: FakeKubo) -> None:
    store: dict[str, bytes] = {}
    _block_put_handler(kubo, store, ack=lambda i, k: k)

    @kubo.route("block/get")
    async def get(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"\x00raw bytes\xff")

    async with conn(kubo) as c:
        cid = await c.block_put(b"hello", codec="raw", mhtype="sha2-256")
        assert cid == CID.v1(RAW, sha256_multihash(b"hello"))
        assert await c.block_get(cid) == b"\x00raw bytes\xff"
        with pytest.raises(InvalidInput, match="unknown block codec"):
            await c.block_put(b"x", codec="nope")
    assert ("arg", str(cid)) in next(q for p, q in kubo.calls if p == "block/get")


async def test_unix_socket_node(tmp_path: Any) -> None:
    app = web.Application()

    async def ident(_: web.Request) -> web.StreamResponse:
        return web.json_response({"ID": PEER, "Addresses": []})

    app.router.add_post("/api/v0/id", ident)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = tmp_path / "api.sock"
    await web.UnixSite(runner, str(sock)).start()
    try:
        async with IPFSHTTPConnector(f"/unix{sock}") as c:
            assert str((await c.id()).id) == PEER
    finally:
        await runner.cleanup()
    async with IPFSHTTPConnector(f"/unix{sock}") as c:
        with pytest.raises(Unavailable, match="ipfshttp: error getting IPFS ID"):
            await c.id()


async def test_extract_headers(kubo: FakeKubo) -> None:
    @kubo.route("version")
    async def version(_: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"Version": "0.42.0"},
            headers={"Access-Control-Expose-Headers": "X-Stream-Output", "X-Extra": "1", "Server": "kubo"},
        )

    async with conn(kubo) as c:
        hdrs = await c.extract_headers("/api/v0/version", ["x-extra"])
        assert (await c.version()).version == "0.42.0"
    assert {k.lower(): v for k, v in hdrs.items()} == {
        "access-control-expose-headers": "X-Stream-Output",
        "x-extra": "1",
    }
