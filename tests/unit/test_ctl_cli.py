"""The real ``ipfs-cluster-ctl`` console script against an aiohttp server on 127.0.0.1 that fakes the REST API.

Each test scripts the fake's answers, runs the ctl as a subprocess and checks stdout, stderr, the exit code and
the requests the fake received (paths, queries, headers, multipart parts).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import BodyPartReader, web
from aiohttp.http_writer import StreamWriter

from pincluster.cli.ctl_format import format_gpi, format_id, format_pin
from pincluster.types.cid import CID
from pincluster.types.codec import from_json, to_json
from pincluster.types.gotime import parse_time
from pincluster.types.models import (
    ID,
    IPFSID,
    AddedOutput,
    GlobalPinInfo,
    Pin,
    PinInfoShort,
    Version,
)
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import TrackerStatus

pytestmark = pytest.mark.timeout(60)

CTL = str(Path(sys.executable).parent / "ipfs-cluster-ctl")
P1 = PeerID.decode("QmUBuxVHoNNjfmNpTad36UeaFQv3gXAtCv9r6KhmeqhEhD")
P2 = PeerID.decode("QmV35LjbEGPfN7KfMAJp43VV2enwXqqQf5esx4vUcgHDQJ")
I1 = PeerID.decode("QmXbiVZd93SLiu9TAm21F2y9JwGiFLydbEVkPBaMR3DZDV")
C1 = CID.decode("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
C2 = CID.decode("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn")
TS = parse_time("2024-05-06T10:11:12.5Z")

ID1 = ID(id=P1, peername="one", cluster_peers=(P1, P2), addresses=(Multiaddr(f"/ip4/127.0.0.1/tcp/9096/p2p/{P1}"),),
         version="1.1.6", rpc_protocol_version="/ipfscluster/1.0/rpc",
         ipfs=IPFSID(id=I1, addresses=(Multiaddr("/ip4/127.0.0.1/tcp/4001"),)))
ID2 = ID(id=P2, error="context deadline exceeded")


def gpi(cid: CID, *statuses: TrackerStatus, error: str = "") -> GlobalPinInfo:
    peers = (P1, P2)
    return GlobalPinInfo(cid=cid, created=TS, peer_map={
        p: PinInfoShort(peername=f"peer{i}", status=s, timestamp=TS, error=error) for i, (p, s) in
        enumerate(zip(peers, statuses, strict=False))})


def pin_obj(cid: CID, rmin: int = -1, rmax: int = -1, name: str = "") -> Pin:
    return Pin(cid=cid, name=name, replication_factor_min=rmin, replication_factor_max=rmax, timestamp=TS)


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # a model object (JSON-encoded), or bytes
    stream: list[Any] | None = None  # NDJSON items, with the X-Stream-Error trailer
    trailer: str = ""


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    parts: list[tuple[str, str, bytes]] = field(default_factory=list)


class FakeAPI:
    """Scripted answers per ``METHOD /path``; a list of answers is served in turn (the last one repeats)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = {}
        self.seen: list[Seen] = []
        self.url = ""

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.answers[f"{method} {path}"] = list(answers)

    def calls(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.method, request.path, dict(request.query), dict(request.headers))
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader)
                data = await part.read()
                name = urllib.parse.unquote_plus(part.filename or "")
                seen.parts.append((name, part.headers.get("Content-Type", ""), bytes(data)))
        else:
            seen.body = await request.read()
        self.seen.append(seen)
        queue = self.answers.get(f"{request.method} {request.path}")
        if not queue:
            return web.json_response({"code": 404, "message": "not found"}, status=404)
        ans = queue.pop(0) if len(queue) > 1 else queue[0]
        if ans.stream is None:
            if ans.body is None:
                return web.Response(status=ans.status)
            raw = ans.body if isinstance(ans.body, bytes) else to_json(ans.body) + b"\n"
            return web.Response(status=ans.status, body=raw, content_type="application/json")
        if not ans.stream and not ans.trailer:
            return web.Response(status=204)
        resp = web.StreamResponse(status=200)
        resp.content_type = "application/json"
        resp.headers["Trailer"] = "X-Stream-Error"
        if request.path == "/add":
            resp.headers["X-Chunked-Output"] = "1"
        resp.enable_chunked_encoding()
        writer = await resp.prepare(request)
        assert isinstance(writer, StreamWriter)
        writer.chunked = False  # frame the chunks ourselves, to end with the trailer
        for item in ans.stream:
            data = to_json(item) + b"\n"
            await resp.write(b"%x\r\n%b\r\n" % (len(data), data))
        await resp.write(b"0\r\nX-Stream-Error: " + ans.trailer.encode() + b"\r\n\r\n")
        await resp.write_eof()
        return resp


@pytest.fixture
async def api() -> AsyncIterator[FakeAPI]:
    fake = FakeAPI()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    fake.url = f"/ip4/127.0.0.1/tcp/{port}"
    yield fake
    await runner.cleanup()


@dataclass
class Result:
    code: int
    out: str
    err: str


async def ctl(api: FakeAPI | None, *args: str, env: dict[str, str] | None = None, host: bool = True) -> Result:
    argv = [CTL, *(["--host", api.url] if host and api is not None else []), *args]
    full_env = {k: v for k, v in os.environ.items() if k != "CLUSTER_CREDENTIALS"}
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=full_env)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


# --- tests ------------------------------------------------------------------------------------------------------
async def test_id_text_json_and_version(api: FakeAPI) -> None:
    api.on("GET", "/id", Answer(body=ID1))
    api.on("GET", "/version", Answer(body=Version(version="1.1.6")))
    r = await ctl(api, "id")
    assert (r.code, r.out, r.err) == (0, format_id(ID1), "")
    r = await ctl(api, "--enc", "json", "id")
    assert r.code == 0 and from_json(r.out.encode(), ID) == ID1 and r.out.startswith('{\n    "id": "')
    r = await ctl(api, "--enc=json", "version")
    assert r.out == '{\n    "version": "1.1.6"\n}\n'
    r = await ctl(api, "version")
    assert r.out == "1.1.6\n"


async def test_stream_items_then_trailer_error_exit_2(api: FakeAPI) -> None:
    api.on("GET", "/peers", Answer(stream=[ID1, ID2], trailer="peer X did not answer"))
    r = await ctl(api, "peers", "ls")
    assert r.code == 2
    assert r.out == (format_id(ID1) + format_id(ID2)
                     + "An error occurred:\n  Code: 500\n  Message: peer X did not answer\n")
    r = await ctl(api, "--enc", "json", "peers", "ls")
    assert r.code == 2 and r.out.count("\n}\n") == 3 and r.out.endswith(
        '{\n    "code": 500,\n    "message": "peer X did not answer"\n}\n')


async def test_api_error_and_transport_error_exit_codes(api: FakeAPI) -> None:
    api.on("GET", f"/allocations/{C1}", Answer(404, b'{"code":404,"message":"pin is not part of the pinset"}\n'))
    r = await ctl(api, "pin", "ls", str(C1))
    assert r.code == 2
    assert r.out == "An error occurred:\n  Code: 404\n  Message: pin is not part of the pinset\n"
    # nothing listens on the fake's port once it is gone: code 0, exit 1
    dead = FakeAPI()
    dead.url = "/ip4/127.0.0.1/tcp/1"
    r = await ctl(dead, "id")
    assert r.code == 1 and r.out.startswith("An error occurred:\n  Code: 0\n  Message: ")


async def test_local_errors(api: FakeAPI) -> None:
    r = await ctl(api, "--enc", "xml", "id")
    assert (r.code, r.err) == (1, "error : unsupported encoding\n")
    r = await ctl(api, "status", "--filter", "bogus")
    assert (r.code, r.err) == (1, "error parsing filter flag: invalid filter name\n")
    r = await ctl(api, "peers", "rm", "notapeer")
    assert r.code == 1 and r.err.startswith("error parsing peer ID: ")
    r = await ctl(api, "status", "nope")
    assert r.code == 1 and r.err.startswith("error parsing cid: ")
    r = await ctl(api, "add")
    assert (r.code, r.err) == (1, "error : need at least one path\n")
    r = await ctl(api, "pin", "add", str(C1), "--metadata", "novalue")
    assert (r.code, r.err) == (1, "error parsing metadata: metadata were not in the format key=value\n")
    r = await ctl(api, "pin", "add", str(C1), "--allocs", f"{P1}, bad")
    assert (r.code, r.err) == (1, "error decoding allocations: some peer IDs could not be decoded\n")
    r = await ctl(api, "pin", "add", str(C1), "--expire-in", "soon")
    assert r.code == 1 and r.err.startswith("error parsing expire-in: ")
    r = await ctl(api, "--host", "/ip4/1.2.3.4/udp/1", "id", host=False)
    assert r.code == 1 and r.err.startswith("error parsing host multiaddress: ")
    r = await ctl(api, "frobnicate")
    assert (r.code, r.out, r.err) == (3, "", "No help topic for 'frobnicate'\n")  # stderr, as Go's ctl
    r = await ctl(api, "peers", "add", str(P1))
    assert (r.code, r.out, r.err) == (3, "", "No help topic for 'add'\n")
    r = await ctl(api, "pin", "add", "QmBad")
    assert r.code == 1 and r.err.startswith('error : invalid path "/ipfs/QmBad": ')
    r = await ctl(api, "pin", "rm", "")
    assert (r.code, r.err) == (1, 'error : invalid path "/ipfs/": path does not have enough components\n')
    r = await ctl(api, "pin", "update", str(C1), "/foo/bar")
    assert r.code == 1 and r.err.startswith('error : invalid path "/foo/bar": unknown namespace "foo"')
    r = await ctl(api, "add", "--nocopy", "some-file")
    assert (r.code, r.err) == (1, "error : nocopy option is only valid for URLs\n")
    r = await ctl(api, "id", "--nope")  # urfave prints usage errors and the help on stdout
    assert (r.code, r.err) == (1, "")
    assert r.out.startswith("Incorrect Usage: flag provided but not defined: -nope\n\nNAME:\n   ipfs-cluster-ctl id - ")
    assert api.seen == []  # none of these reached the API


async def test_status_variants(api: FakeAPI) -> None:
    g1, g2 = gpi(C1, TrackerStatus.PINNED, TrackerStatus.PIN_QUEUED), gpi(C2, TrackerStatus.REMOTE)
    api.on("GET", "/pins", Answer(stream=[g1, g2]))
    api.on("GET", f"/pins/{C1}", Answer(body=g1))
    r = await ctl(api, "status", "--local", "--filter", "pinned,queued")
    assert (r.code, r.out) == (0, format_gpi(g1) + format_gpi(g2))
    q = api.calls("GET", "/pins")[-1].query
    assert q["local"] == "true" and q["cids"] == "" and set(q["filter"].split(",")) == {"pinned", "queued"}
    r = await ctl(api, "status", str(C1))
    assert r.out == format_gpi(g1) and api.calls("GET", f"/pins/{C1}")[-1].query == {"local": "false"}
    r = await ctl(api, "status", str(C1), str(C2))
    assert r.out == format_gpi(g1) + format_gpi(g2)
    assert api.calls("GET", "/pins")[-1].query["cids"] == f"{C1},{C2}"
    api.on("GET", "/pins", Answer(stream=[]))
    r = await ctl(api, "status")
    assert (r.code, r.out, r.err) == (0, "", "")


async def test_pin_add_no_status_query(api: FakeAPI) -> None:
    p = pin_obj(C1, 2, 3, "nm")
    api.on("POST", f"/pins/ipfs/{C1}", Answer(body=p))
    r = await ctl(api, "pin", "add", str(C1), "--rmin", "2", "--rmax", "3", "-n", "nm", "--mode", "direct",
                  "--metadata", "a=b=c", "--allocs", f"{P1},{P2}", "--expire-in", "1h", "--no-status")
    assert (r.code, r.out) == (0, format_pin(p))
    q = api.calls("POST", f"/pins/ipfs/{C1}")[0].query
    assert q["replication-min"] == "2" and q["replication-max"] == "3" and q["name"] == "nm"
    assert q["mode"] == "direct" and q["meta-a"] == "b=c" and q["user-allocations"] == f"{P1},{P2}"
    assert "expire-at" in q and q["shard-size"] == "0"
    r = await ctl(api, "pin", "add", f"/ipfs/{C1}/", "-r", "4", "--ns")
    q = api.calls("POST", f"/pins/ipfs/{C1}")[1].query
    assert r.code == 0 and q["replication-min"] == q["replication-max"] == "4"


async def test_pin_add_wait_prints_final_status(api: FakeAPI) -> None:
    api.on("POST", f"/pins/ipfs/{C1}", Answer(body=pin_obj(C1)))
    queued, done = gpi(C1, TrackerStatus.PINNING, TrackerStatus.REMOTE), gpi(C1, TrackerStatus.PINNED,
                                                                           TrackerStatus.REMOTE)
    api.on("GET", f"/pins/{C1}", Answer(body=queued), Answer(body=done))
    r = await ctl(api, "pin", "add", str(C1), "--wait")
    assert (r.code, r.out) == (0, format_gpi(done))
    assert len(api.calls("GET", f"/pins/{C1}")) == 2


async def test_wait_timeout_exits_62_and_wait_error_exits_1(api: FakeAPI) -> None:
    api.on("POST", f"/pins/ipfs/{C1}", Answer(body=pin_obj(C1)))
    api.on("GET", f"/pins/{C1}", Answer(body=gpi(C1, TrackerStatus.PIN_QUEUED)))
    r = await ctl(api, "pin", "add", str(C1), "-w", "--wt", "1500ms")
    assert (r.code, r.out, r.err) == (62, "", "error waiting for pin status: context deadline exceeded\n")
    api.on("GET", f"/pins/{C1}", Answer(body=gpi(C1, TrackerStatus.PINNED, TrackerStatus.PIN_ERROR)))
    r = await ctl(api, "pin", "add", str(C1), "--wait")
    assert r.code == 1
    assert r.err == "error waiting for pin status: error has occurred while attempting to reach status: pinned\n"


async def test_pin_rm_sleeps_then_prints_status_and_update(api: FakeAPI) -> None:
    api.on("DELETE", f"/pins/ipfs/{C1}", Answer(body=pin_obj(C1)))
    g = gpi(C1, TrackerStatus.UNPINNED, TrackerStatus.UNPINNED)
    api.on("GET", f"/pins/{C1}", Answer(body=g))
    r = await ctl(api, "pin", "rm", str(C1))
    assert (r.code, r.out) == (0, format_gpi(g))
    assert api.calls("GET", f"/pins/{C1}")[0].query == {"local": "false"}
    api.on("POST", f"/pins/ipfs/{C2}", Answer(body=pin_obj(C2)))
    r = await ctl(api, "pin", "update", str(C1), str(C2), "--name", "v2", "--no-status")
    q = api.calls("POST", f"/pins/ipfs/{C2}")[0].query
    assert r.code == 0 and q["pin-update"] == str(C1) and q["name"] == "v2"
    # a CID followed by a path is a path under /ipfs/, as Go's client reads it (pin rm, add and update alike)
    api.on("DELETE", f"/pins/ipfs/{C1}/sub/dir", Answer(body=pin_obj(C2)))
    r = await ctl(api, "pin", "rm", f"{C1}/sub/dir", "--no-status")
    assert (r.code, r.out) == (0, format_pin(pin_obj(C2)))
    api.on("POST", f"/pins/ipfs/{C2}/x", Answer(body=pin_obj(C2)))
    r = await ctl(api, "pin", "update", str(C1), f"{C2}/x", "--no-status")
    assert r.code == 0 and api.calls("POST", f"/pins/ipfs/{C2}/x")[0].query["pin-update"] == str(C1)


async def test_commands_lists_every_command_in_go_order(api: FakeAPI) -> None:
    """Go's ``walkCommands``: definition order, parents first, hidden ``commands`` and ``help`` included;
    ``sync`` is pincluster's own."""
    r = await ctl(api, "commands")
    assert r.code == 0
    assert r.out.splitlines() == [f"ipfs-cluster-ctl {c}" for c in (
        "id", "peers", "peers ls", "peers rm", "add", "pin", "pin add", "pin rm", "pin update", "pin ls", "status",
        "recover", "sync", "version", "health", "health graph", "health metrics", "health alerts",
        "health bandwidth", "ipfs", "ipfs gc", "commands", "help")]


async def test_pin_ls(api: FakeAPI) -> None:
    p1, p2 = pin_obj(C1), pin_obj(C2, 1, 2)
    api.on("GET", "/allocations", Answer(stream=[p1, p2]))
    r = await ctl(api, "pin", "ls")
    assert (r.code, r.out) == (0, format_pin(p1) + format_pin(p2))
    assert api.calls("GET", "/allocations")[0].query == {"filter": "all"}
    await ctl(api, "pin", "ls", "--filter", "pin,shard-pin")
    assert api.calls("GET", "/allocations")[1].query == {"filter": "pin,shard-pin"}


async def test_recover_and_sync(api: FakeAPI) -> None:
    g = gpi(C1, TrackerStatus.PIN_QUEUED)
    api.on("POST", f"/pins/{C1}/recover", Answer(body=g))
    api.on("POST", "/pins/recover", Answer(stream=[g]))
    done = gpi(C1, TrackerStatus.PINNED)
    api.on("GET", f"/pins/{C1}", Answer(body=done))
    api.on("GET", "/pins", Answer(stream=[done]))
    r = await ctl(api, "recover", str(C1), "--local")
    assert (r.code, r.out) == (0, format_gpi(g))
    assert api.calls("POST", f"/pins/{C1}/recover")[0].query == {"local": "true"}
    r = await ctl(api, "recover")
    assert r.out == format_gpi(g)
    api.seen.clear()
    r = await ctl(api, "sync", str(C1))
    assert (r.code, r.out) == (0, format_gpi(done))
    assert [(s.method, s.path) for s in api.seen] == [("POST", f"/pins/{C1}/recover"), ("GET", f"/pins/{C1}")]
    api.seen.clear()
    r = await ctl(api, "sync")
    assert r.out == format_gpi(done)
    assert [(s.method, s.path) for s in api.seen] == [("POST", "/pins/recover"), ("GET", "/pins")]


async def test_add_files_and_folders(api: FakeAPI, tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_bytes(b"bbb")
    (tmp_path / "d" / "sub" / "a.txt").write_bytes(b"aaa")
    (tmp_path / "d" / ".hidden").write_bytes(b"h")
    (tmp_path / "f.txt").write_bytes(b"hello world\n")
    evs = [AddedOutput(name="d/b.txt", cid=C1, size=3), AddedOutput(name="d", cid=C2)]
    api.on("POST", "/add", Answer(stream=evs))
    r = await ctl(api, "add", "-r", str(tmp_path / "d"), "--rmin", "1", "--rmax", "2", "--cid-version", "1")
    assert (r.code, r.out) == (0, f"added {C1} d/b.txt\nadded {C2} d\n")
    seen = api.calls("POST", "/add")[0]
    assert [(n, t) for n, t, _ in seen.parts] == [
        ("d", "application/x-directory"), ("d/b.txt", "application/octet-stream"),
        ("d/sub", "application/x-directory"), ("d/sub/a.txt", "application/octet-stream")]
    q = seen.query
    assert q["recursive"] == "true" and q["raw-leaves"] == "true" and q["cid-version"] == "1"
    assert q["replication-min"] == "1" and q["stream-channels"] == "true" and q["wrap-with-directory"] == "false"
    assert q["progress"] == "false"  # output is not a terminal: no progress bar
    r = await ctl(api, "add", "-Q", str(tmp_path / "f.txt"), str(tmp_path / "d" / "b.txt"))
    assert (r.code, r.out) == (0, f"{C2}\n")
    assert api.calls("POST", "/add")[1].query["wrap-with-directory"] == "true"
    r = await ctl(api, "add", "-q", str(tmp_path / "f.txt"))
    assert r.out == f"{C1}\n{C2}\n"
    r = await ctl(api, "--enc", "json", "add", "--no-stream", str(tmp_path / "f.txt"))
    assert from_json(r.out.encode(), list[AddedOutput]) == evs and r.out.startswith("[\n    {\n        ")
    assert api.calls("POST", "/add")[-1].parts == [("f.txt", "application/octet-stream", b"hello world\n")]
    r = await ctl(api, "add", str(tmp_path / "d"))
    assert r.code == 1 and "use -r" in r.err
    r = await ctl(api, "add", "--format", "car", "-w", str(tmp_path / "f.txt"))
    assert r.err == "error : only a single CAR file can be added and wrap-with-directory is not supported\n"


async def test_add_wait(api: FakeAPI, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_bytes(b"x")
    api.on("POST", "/add", Answer(stream=[AddedOutput(name="f.txt", cid=C1, size=1)]))
    api.on("GET", f"/allocations/{C1}", Answer(body=pin_obj(C1, 1, 2)))
    api.on("GET", f"/pins/{C1}", Answer(body=gpi(C1, TrackerStatus.PINNED, TrackerStatus.PINNING)))
    r = await ctl(api, "add", "--wait", str(tmp_path / "f.txt"))
    assert (r.code, r.out) == (0, f"added {C1} f.txt\n")  # limit 1 (rmin) reached by one peer
    api.on("POST", "/add", Answer(stream=[AddedOutput(name="f.txt", cid=C1, size=1)], trailer="pinning failed"))
    r = await ctl(api, "add", str(tmp_path / "f.txt"))
    assert r.code == 2 and r.out == f"added {C1} f.txt\nAn error occurred:\n  Code: 500\n  Message: pinning failed\n"


async def test_health_and_gc(api: FakeAPI) -> None:
    graph = (f'{{"cluster_id":"{P1}","id_to_peername":{{"{P1}":"one"}},"ipfs_links":{{"{I1}":[]}},'
             f'"cluster_links":{{"{P1}":[]}},"cluster_trust_links":{{"{P1}":false}},'
             f'"cluster_to_ipfs":{{"{P1}":"{I1}"}}}}').encode()
    api.on("GET", "/health/graph", Answer(body=graph))
    r = await ctl(api, "health", "graph")
    assert r.code == 0 and r.out.startswith("digraph cluster {\n") and r.out.endswith("C0 -> I0\n\n"
        "/* The swarm peer connections among ipfs daemons in the cluster */\n}")
    api.on("GET", "/monitor/metrics", Answer(body=b'["freespace","ping"]'))
    r = await ctl(api, "health", "metrics")
    assert r.out == "freespace\nping\n"
    far = time.time_ns() + 2000 * 86400 * 10**9  # 2000 days: 5 go-humanize "years" of 360 days
    api.on("GET", "/monitor/metrics/freespace", Answer(body=(
        f'[{{"name":"freespace","peer":"{P1}","value":"21000000000","expire":{far},"valid":true,'
        f'"weight":21000000000,"partitionable":false,"received_at":0}}]').encode()))
    r = await ctl(api, "health", "metrics", "freespace")
    assert r.out == f"{P1} | freespace: 21 GB | Expires in: 5 years from now\n"
    api.on("GET", "/health/alerts", Answer(body=b"[]"))
    r = await ctl(api, "health", "alerts")
    assert (r.code, r.out) == (0, "")
    r = await ctl(api, "--enc", "json", "health", "alerts")
    assert r.out == "[]\n"
    api.on("POST", "/ipfs/gc", Answer(body=(
        f'{{"peer_map":{{"{P1}":{{"peer":"{P1}","peername":"one","keys":[{{"key":"{C1}"}}]}}}}}}').encode()))
    r = await ctl(api, "ipfs", "gc", "--local")
    assert r.out == f"one            \n  > CIDs:\n    - {C1}\n"
    assert api.calls("POST", "/ipfs/gc")[0].query == {"local": "true"}


async def test_basic_auth_debug_and_env(api: FakeAPI, tmp_path: Path) -> None:
    api.on("GET", "/version", Answer(body=Version(version="1.1.6")))
    r = await ctl(api, "--basic-auth", "user:pw", "--force-http", "-d", "version")
    assert r.code == 0 and r.out == "1.1.6\n"
    assert api.seen[-1].headers["Authorization"] == "Basic dXNlcjpwdw=="
    assert f"> GET http://127.0.0.1:{api.url.rsplit('/', 1)[1]}/version" in r.err
    assert "< 200" in r.err and "Authorization: <redacted>" in r.err and '"version":"1.1.6"' in r.err
    r = await ctl(api, "-f", "version", env={"CLUSTER_CREDENTIALS": "env:secret"})
    assert r.code == 0 and api.seen[-1].headers["Authorization"] == "Basic ZW52OnNlY3JldA=="
    # basic auth without --force-http switches to HTTPS: the plain-HTTP fake cannot answer a TLS handshake
    r = await ctl(api, "-t", "5", "--basic-auth", "user:pw", "version")
    assert r.code == 1 and "Code: 0" in r.out
    # --host fails over to the next address on transport errors
    r = await ctl(api, "--host", f"/ip4/127.0.0.1/tcp/1,{api.url}", "version", host=False)
    assert (r.code, r.out) == (0, "1.1.6\n")
    r = await ctl(api, "health", "graph", "-f", str(tmp_path / "g.dot"))
    assert r.code == 2  # not scripted: the fake answers 404


async def test_add_progress_bar_on_a_terminal(api: FakeAPI, tmp_path: Path) -> None:
    """On a terminal the ctl asks for progress events and draws them as a bar instead of printing them."""
    import pty

    (tmp_path / "f.txt").write_bytes(b"x" * 5000)
    api.on("POST", "/add", Answer(stream=[AddedOutput(name="f.txt", bytes=5000),
                                          AddedOutput(name="f.txt", cid=C1, size=5000)]))
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CLUSTER_CREDENTIALS"}
    env.update(TERM="xterm", COLUMNS="100")
    proc = await asyncio.create_subprocess_exec(CTL, "--host", api.url, "add", str(tmp_path / "f.txt"),
                                                stdout=slave, stderr=slave, env=env)
    os.close(slave)

    def read_all() -> bytes:
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    out = (await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, read_all), 30)).decode()
    os.close(master)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert f"added {C1} f.txt" in out and "added  f.txt" not in out
    assert api.calls("POST", "/add")[0].query["progress"] == "true"


async def test_help_is_urfaves_layout() -> None:
    """The help as urfave/cli v1 prints it (compared byte for byte with Go's in tests/integration/test_go_help.py);
    its lines are as long as Go's (up to 119 columns), whatever the terminal's width."""
    for args in (["--help"], ["add", "--help"], ["pin", "add", "--help"], ["status", "--help"],
                 ["help", "health", "graph"], ["pin", "update", "-h"]):
        r = await ctl(None, *args, env={"COLUMNS": "40"})
        assert r.code == 0 and r.out.startswith("NAME:\n   ipfs-cluster-ctl"), args
        assert "\n\nUSAGE:\n   ipfs-cluster-ctl" in r.out, args
        assert max(len(line) for line in r.out.splitlines()) < 120, args
    r = await ctl(None, "status", "--help")
    assert "\n  - unexpectedly_unpinned\n" in r.out
    r = await ctl(None, "--version")
    assert r.out == "ipfs-cluster-ctl version 1.1.6\n"


async def test_wait_limit_and_add_from_url(api: FakeAPI) -> None:
    api.on("POST", f"/pins/ipfs/{C1}", Answer(body=pin_obj(C1)))
    half = gpi(C1, TrackerStatus.PINNED, TrackerStatus.PINNING)
    api.on("GET", f"/pins/{C1}", Answer(body=half))
    r = await ctl(api, "pin", "add", str(C1), "--wait", "--wl", "1")
    assert (r.code, r.out) == (0, format_gpi(half))  # one pinned peer is enough with --wait-limit 1
    port = api.url.rsplit("/", 1)[1]
    api.on("GET", "/web/some data.bin", Answer(body=b"web content"))
    api.on("POST", "/add", Answer(stream=[AddedOutput(name="some data.bin", cid=C2, size=11)]))
    r = await ctl(api, "add", f"http://127.0.0.1:{port}/web/some%20data.bin")
    assert (r.code, r.out) == (0, f"added {C2} some data.bin\n")
    assert api.calls("POST", "/add")[0].parts == [("some data.bin", "application/octet-stream", b"web content")]
    r = await ctl(api, "add", f"http://127.0.0.1:{port}/missing.bin")
    assert r.code == 1 and "HTTP 404" in r.err


async def test_listings_are_written_in_batches_yet_never_held_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """``emit_all`` writes ~64 KB at once (a write and flush per item cost more than the item's text), but an
    item waits at most ~0.1 s: a stream that stalls (a slow peer) still shows what arrived."""
    from pincluster.cli.ctl import Ctl, StdoutClosed

    c = Ctl(hosts=[], https=None, verify=True, username=None, password=None, timeout=None, debug=False,
            encoding="text")
    writes: list[tuple[float, str]] = []
    monkeypatch.setattr(Ctl, "write", staticmethod(lambda text: writes.append((time.monotonic(), text))))
    marks: dict[str, float] = {}

    async def items() -> AsyncIterator[int]:
        for i in range(5000):
            yield i
        marks["stall"] = time.monotonic()
        await asyncio.sleep(0.6)
        marks["resumed"] = time.monotonic()
        yield -1

    await c.emit_all(items(), lambda i: f"item {i:<43}\n")
    assert "".join(t for _, t in writes) == "".join(f"item {i:<43}\n" for i in [*range(5000), -1])
    assert 2 < len(writes) < 10  # 250 KB in a few writes, not 5001
    last_before = next(w for w in writes if "item 4999 " in w[1])
    assert marks["stall"] <= last_before[0] < marks["resumed"]  # written while the stream stalled

    def closed(text: str) -> None:
        raise StdoutClosed()

    async def slow() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(0.3)
        yield 2

    monkeypatch.setattr(Ctl, "write", staticmethod(closed))
    with pytest.raises(StdoutClosed):  # a reader gone during a timed write ends the command as any other write
        await c.emit_all(slow(), str)
