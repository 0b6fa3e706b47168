"""The Python SDK: host parsing, sync wrapper, uploads from disk, errors, keep-alive, Unix sockets."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
from test_restapi_fakes import FakeCluster, cid_of, start_api

from pincluster.api.interface import AddParams
from pincluster.api.rest.server import RestAPI
from pincluster.client import APIError, Client, Endpoint, SyncClient, TransportError, add_query, parse_host
from pincluster.errors import InvalidInput
from pincluster.ipfs.unixfs.importer import AddOptions
from pincluster.types.models import PinOptions
from pincluster.types.status import TrackerStatus

pytestmark = pytest.mark.timeout(60)

HELLO_CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


def test_parse_host() -> None:
    assert parse_host("/ip4/127.0.0.1/tcp/9094") == Endpoint("http", "127.0.0.1", 9094)
    assert parse_host("/dns4/cluster.example/tcp/443/https") == Endpoint("https", "cluster.example", 443)
    assert parse_host("/ip6/::1/tcp/9094", https=True) == Endpoint("https", "::1", 9094)
    assert parse_host("/unix/tmp/api.sock") == Endpoint("http", unix_path="/tmp/api.sock")
    assert parse_host("https://h.example:9443") == Endpoint("https", "h.example", 9443)
    assert parse_host("http://h.example") == Endpoint("http", "h.example", 9094)
    assert parse_host("localhost:1234") == Endpoint("http", "localhost", 1234)
    assert parse_host("http+unix://%2Ftmp%2Fx.sock") == Endpoint("http", unix_path="/tmp/x.sock")
    assert parse_host("http://[::1]:9094").host_header == "[::1]:9094"
    for bad in ("/ip4/1.2.3.4/udp/1", "ftp://x", "/ip4/999.1.1.1/tcp/1", "http://:80"):
        with pytest.raises(InvalidInput):
            parse_host(bad)


def test_add_query_matches_go_client() -> None:
    params = AddParams(import_options=AddOptions(cid_version=1, raw_leaves=True, wrap_with_directory=True),
                       pin_options=PinOptions(name="n", metadata={"a": "b"}), local=True)
    q = dict(add_query(params))
    assert [k for k, _ in add_query(params)] == sorted(q)
    assert q["cid-version"] == "1" and q["raw-leaves"] == "true" and q["wrap-with-directory"] == "true"
    assert q["local"] == "true" and q["stream-channels"] == "true" and q["layout"] == "balanced"
    assert q["name"] == "n" and q["meta-a"] == "b" and q["shard-size"] == "104857600"
    assert q["replication-min"] == "0" and q["user-allocations"] == "" and "pin-update" not in q


@pytest.fixture
def served() -> Iterator[tuple[str, FakeCluster]]:
    """A server in its own thread and loop, so the blocking SyncClient can be used from the test."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def up() -> None:
            a, c = await start_api()
            holder["api"], holder["cluster"] = a, c
            ready.set()

        loop.run_until_complete(up())
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(10)
    api = holder["api"]
    assert isinstance(api, RestAPI)
    cluster = holder["cluster"]
    assert isinstance(cluster, FakeCluster)
    yield api.url, cluster
    asyncio.run_coroutine_threadsafe(api.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)


def test_sync_client(served: tuple[str, FakeCluster]) -> None:
    url, c = served
    with SyncClient(url) as cl:
        assert cl.id().id == c.self_id
        assert [p.id for p in cl.peers()] == c.members
        pin = cl.pin(cid_of(b"s"), PinOptions(name="sync"))
        assert pin.name == "sync"
        assert [g.cid for g in cl.status_all(TrackerStatus.PINNED)] == [pin.cid]

        class Brief(msgspec.Struct):  # view=: only these fields are decoded
            cid: str
            name: str = ""

        assert [(b.cid, b.name) for b in cl.status_all(view=Brief)] == [(str(pin.cid), "sync")]
        assert [(b.cid, b.name) for b in cl.allocations(view=Brief)] == [(str(pin.cid), "sync")]
        assert [b.cid for b in cl.status_cids([pin.cid], view=Brief)] == [str(pin.cid)]
        out = list(cl.add_bytes(b"hello world\n", "h.txt"))
        assert str(out[-1].cid) == HELLO_CID
        c.fail_after = 1
        it = cl.peers()
        assert next(it).id == c.self_id
        with pytest.raises(APIError, match="did not answer"):
            next(it)
        c.fail_after = None
        it = cl.peers()  # abandoning an iterator half-way closes it cleanly
        next(it)
        it.close()
        assert cl.version().version == "1.1.6"


async def test_add_paths_from_disk() -> None:
    a, c = await start_api()
    try:
        with tempfile.TemporaryDirectory() as d:
            top = os.path.join(d, "folder")
            os.makedirs(os.path.join(top, "sub"))
            for rel, data in (("b.txt", b"hello world\n"), ("sub/c.bin", os.urandom(600_000)), (".hid", b"h")):
                with open(os.path.join(top, rel), "wb") as f:
                    f.write(data)
            async with Client(a.url) as cl:
                out = [o async for o in cl.add_paths([top], recursive=True)]
                assert [o.name for o in out] == ["folder/b.txt", "folder/sub/c.bin", "folder/sub", "folder"]
                assert str(out[0].cid) == HELLO_CID and out[-1].cid in c.pinset
                with pytest.raises(InvalidInput, match="recursive"):
                    [o async for o in cl.add_paths([top])]
                # stream-channels=false: the server answers one JSON array; the client yields the same items
                params = AddParams(import_options=AddOptions(progress=True), pin_options=PinOptions(),
                                   stream_channels=False)
                out2 = [o async for o in cl.add_paths([os.path.join(top, "sub", "c.bin")], params)]
                assert out2[-1].cid == out[1].cid and any(o.cid is None and o.bytes for o in out2)
    finally:
        await a.stop()


async def test_transport_errors_and_timeouts() -> None:
    with tempfile.TemporaryDirectory() as d:  # a socket path nobody listens on: refused, with no port races
        async with Client(f"/unix/{d}/nothing.sock") as cl:
            with pytest.raises(TransportError) as ei:
                await cl.version()
            assert ei.value.code == 0 and "cannot connect" in str(ei.value)

    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        w.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Client(f"http://127.0.0.1:{port}", timeout=0.3) as cl:
            with pytest.raises(TransportError, match="no answer within"):
                await cl.version()
    finally:
        server.close()


async def test_keep_alive_reuses_connections() -> None:
    from datetime import timedelta

    a, c = await start_api(idle_timeout=timedelta(seconds=0.2))
    try:
        async with Client(a.url) as cl:
            for _ in range(5):
                await cl.version()
                assert [p.id async for p in cl.peers()] == c.members
            assert len(cl._transport._idle) == 1
            # the server closes the idle connection; the next request is retried on a new one
            await asyncio.sleep(0.6)
            assert (await cl.version()).version == "1.1.6"
    finally:
        await a.stop()


async def test_non_json_error_and_bad_stream_status() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\nConnection: close\r\n\r\nupstream!!\n")
        await w.drain()
        w.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Client(f"http://127.0.0.1:{port}") as cl:
            with pytest.raises(APIError) as ei:
                await cl.id()
            assert (ei.value.code, ei.value.message) == (502, "upstream!!")
            with pytest.raises(APIError) as ei:
                [p async for p in cl.peers()]
            assert ei.value.code == 502
    finally:
        server.close()


async def test_upload_error_is_reported() -> None:
    a, _ = await start_api()
    try:
        from pincluster.ipfs.unixfs.importer import ImportEntry

        async def broken() -> AsyncIterator[bytes]:
            yield b"x" * 1000
            raise OSError("disk read failed")

        async with Client(a.url) as cl:
            with pytest.raises(OSError, match="disk read failed"):
                [o async for o in cl.add([ImportEntry("f", "file", broken())])]
            assert (await cl.version()).version == "1.1.6"
    finally:
        await a.stop()


async def test_host_failover_and_wait_for() -> None:
    async def hang_up(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()  # a broken API: accepts, then closes without answering

    broken = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    dead = broken.sockets[0].getsockname()[1]
    a, _ = await start_api()
    try:
        async with Client(f"/ip4/127.0.0.1/tcp/{dead}") as cl:  # alone, it says what happened and a likely why
            with pytest.raises(TransportError) as got:
                await cl.version()
            assert str(got.value).startswith(f"http://127.0.0.1:{dead} closed the connection without answering "
                                             "(an HTTPS server answers plain HTTP that way")
        async with Client(f"/ip4/127.0.0.1/tcp/{dead},{a.url}") as cl:
            assert (await cl.version()).version == "1.1.6"
            assert cl.endpoint.port == a.addresses[0].tcp_host_port()[1]
            x = cid_of(b"w")
            await cl.pin(x)
            done = await cl.wait_for(x, TrackerStatus.PINNED, timeout=5, interval=0.01)
            assert {p.status for p in done.peer_map.values()} == {TrackerStatus.PINNED}
            assert (await cl.wait_for(x, TrackerStatus.PINNED, limit=2, timeout=5)).cid == x
            from pincluster.client import WaitTimeout

            with pytest.raises(WaitTimeout, match="context deadline exceeded"):
                await cl.wait_for(x, TrackerStatus.UNPINNED, timeout=0.2, interval=0.05)
            await cl.pin(cid_of(b"bad"), PinOptions(name="broken"))
            with pytest.raises(APIError, match="error has occurred while attempting to reach status: pinned"):
                await cl.wait_for(cid_of(b"bad"), TrackerStatus.PINNED, timeout=5, interval=0.01)
    finally:
        await a.stop()
        broken.close()


async def test_add_answers_200_while_the_upload_goes_on() -> None:
    a, _ = await start_api()
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n"
               b"Content-Type: application/octet-stream\r\n\r\nhello ")
        await asyncio.wait_for(release.wait(), 10)  # the upload stalls until the headers have arrived
        yield b"world\n\r\n--B--\r\n"

    try:
        async with Client(a.url) as cl:
            resp = await asyncio.wait_for(
                cl._send("POST", "/add", [], body(), [("Content-Type", "multipart/form-data; boundary=B")]), 5)
            assert resp.status == 200 and resp.header("x-chunked-output") == "1"
            release.set()
            data = await resp.read()
            assert HELLO_CID.encode() in data and resp.trailer_values("x-stream-error") == []
    finally:
        await a.stop()
