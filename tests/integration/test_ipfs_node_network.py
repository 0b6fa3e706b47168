"""End to end: real `pincluster-ipfs daemon` processes on 127.0.0.1 with real sockets.

- three nodes: A and B share a swarm key, C has another; data added on A is pinned and cat'ed on B
  byte-identical; C cannot connect (the error names swarm.key) and cannot fetch;
- GC through the API removes unpinned blocks and keeps pinned ones;
- kill -9 during an add, then restart: the repo is consistent;
- a kubo RPC client written by others (aioipfs, from PyPI) adds, cats, pins, lists and unpins.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.vectors import VECTORS
from tests.vectors import content as _vector_content

pytestmark = pytest.mark.timeout(120)


class Daemon:
    """One node process; ``repo`` is initialised by the CLI."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.proc: asyncio.subprocess.Process | None = None
        self.log = repo / "daemon.log"
        self.url = ""

    @staticmethod
    async def cli(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pincluster.ipfs.cli", *argv,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode()

    async def init(self, *extra: str) -> None:
        rc, out = await self.cli(
            "--repo", str(self.repo), "init", "--api-addr", "/ip4/127.0.0.1/tcp/0",
            "--swarm-addr", "/ip4/127.0.0.1/tcp/0", "--fetch-timeout", "2s", *extra,
        )
        assert rc == 0, out

    async def start(self, env: dict[str, str] | None = None) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        logf = open(self.log, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pincluster.ipfs.cli", "--repo", str(self.repo), "daemon",
            stdout=logf, stderr=asyncio.subprocess.STDOUT, env=env,
        )
        logf.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while "Daemon is ready" not in self.log.read_text()[offset:]:
            if self.proc.returncode is not None or loop.time() > deadline:
                raise AssertionError(f"daemon did not start:\n{self.log.read_text()}")
            await asyncio.sleep(0.1)
        host_port = (self.repo / "api").read_text().strip().split("/")
        self.url = f"http://{host_port[2]}:{host_port[4]}"

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def post(self, path: str, params: Any = None, data: Any = None) -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as s, s.post(f"{self.url}/api/v0/{path}", params=params,
                                                         data=data) as r:
            return r.status, await r.read()

    async def ok(self, path: str, params: Any = None, data: Any = None) -> Any:
        status, body = await self.post(path, params, data)
        assert status == 200, (path, body)
        return json.loads(body)

    async def lines(self, path: str, params: Any = None, data: Any = None) -> list[Any]:
        status, body = await self.post(path, params, data)
        assert status == 200, (path, body)
        return [json.loads(x) for x in body.splitlines() if x.strip()]

    async def add(self, name: str, data: Any, **params: str) -> str:
        w = aiohttp.MultipartWriter("form-data")
        part = w.append(data, {"Content-Type": "application/octet-stream"})
        part.headers["Content-Disposition"] = f'form-data; name="file"; filename="{name}"'
        out = await self.lines("add", params, w)
        return str(out[-1]["Hash"])


@pytest.fixture
async def daemons(tmp_path: Path) -> AsyncIterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    await asyncio.gather(*(d.stop() for d in started), return_exceptions=True)


async def test_private_network_fetch_refuse_and_gc(tmp_path: Path, daemons: list[Daemon]) -> None:
    a, b, c = Daemon(tmp_path / "a"), Daemon(tmp_path / "b"), Daemon(tmp_path / "c")
    await a.init("--swarm-key-gen")
    await asyncio.gather(b.init("--swarm-key", str(a.repo / "swarm.key")), c.init("--swarm-key-gen"))
    daemons.extend([a, b, c])
    await asyncio.gather(a.start(), b.start(), c.start())

    data = os.urandom(3 * 1024 * 1024 + 123)
    root = await a.add("data.bin", data)
    a_addr = (await a.ok("id"))["Addresses"][0]

    # B (same key): connect, pin (fetching every block) and cat byte-identical.
    res = await b.ok("swarm/connect", {"arg": a_addr})
    assert res["Strings"][0].endswith("success")
    peers = await b.ok("swarm/peers")
    assert [p["Peer"] for p in peers["Peers"]] == [a_addr.split("/p2p/")[1]]
    pinned = await b.lines("pin/add", {"arg": root, "progress": "true"})
    assert pinned[-1] == {"Pins": [root]} and any("Progress" in x for x in pinned)
    status, got = await b.post("cat", {"arg": root})
    assert status == 200 and hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert [x["Cid"] for x in await b.lines("pin/ls", {"stream": "true", "type": "recursive"})] == [root]
    # Once pinned, B has every block locally: it serves the cat even with A gone from its peers.
    await b.ok("swarm/disconnect", {"arg": a_addr})
    status, got = await b.post("cat", {"arg": root})
    assert got == data

    # C (other key): cannot connect, and the error says why; cannot fetch.
    status, body = await c.post("swarm/connect", {"arg": a_addr})
    msg = json.loads(body)["Message"]
    assert status == 500 and "swarm.key" in msg and "failure" in msg
    status, body = await c.post("cat", {"arg": root})
    assert status == 500 and "could not fetch" in json.loads(body)["Message"]
    assert (await c.ok("swarm/peers"))["Peers"] == []
    assert "swarm.key" in a.log.read_text()  # the refused side logs it too

    # GC on B: unpinned blocks go, pinned ones stay.
    loose = await b.add("loose.bin", os.urandom(700_000), pin="false")
    n_before = (await b.ok("repo/stat"))["NumObjects"]
    removed = await b.lines("repo/gc")
    assert len(removed) == 4  # loose: 3 leaves + root
    assert (await b.ok("repo/stat"))["NumObjects"] == n_before - 4
    status, body = await b.post("block/stat", {"arg": loose})
    assert status == 500  # gone (and no peer has it)
    status, got = await b.post("cat", {"arg": root})
    assert got == data
    assert await b.lines("pin/verify", {"verbose": "true"}) == [{"Cid": root, "Ok": True}]


async def test_kill_9_during_add_then_restart_is_consistent(tmp_path: Path, daemons: list[Daemon]) -> None:
    a = Daemon(tmp_path / "a")
    await a.init()
    daemons.append(a)
    await a.start()
    kept = await a.add("kept.bin", os.urandom(500_000))

    sent = 0
    enough = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(400):
            chunk = os.urandom(1 << 20)
            sent += len(chunk)
            if sent >= 48 << 20:
                enough.set()
            yield chunk
            await asyncio.sleep(0.005)

    async def doomed_add() -> None:
        with contextlib.suppress(aiohttp.ClientError, AssertionError, asyncio.CancelledError):
            await a.add("big.bin", slow_body(), progress="true")

    task = asyncio.create_task(doomed_add())
    await asyncio.wait_for(enough.wait(), 60)
    await a.kill9()
    await task

    await a.start()  # the kernel released the repo lock with the process
    pins = await a.lines("pin/ls", {"stream": "true", "type": "recursive"})
    assert [p["Cid"] for p in pins] == [kept]  # the interrupted add recorded no pin
    verify = await a.lines("pin/verify", {"verbose": "true"})
    assert verify == [{"Cid": kept, "Ok": True}]
    assert not any((a.repo / "blocks" / ".temp").iterdir())  # partial writes were discarded
    # Every block on disk is intact, and the store is usable: GC collects the orphans, a new add works.
    orphans = await a.lines("repo/gc")
    assert orphans, "the add was really interrupted mid-way: its stored blocks are unpinned orphans"
    data = os.urandom(300_000)
    again = await a.add("again.bin", data)
    _status, got = await a.post("cat", {"arg": again})
    assert got == data
    assert len(await a.lines("pin/verify", {"verbose": "true"})) == 2


async def test_kubo_client_aioipfs(tmp_path: Path, daemons: list[Daemon]) -> None:
    aioipfs = pytest.importorskip("aioipfs")
    a = Daemon(tmp_path / "a")
    await a.init()
    daemons.append(a)
    await a.start()
    api = (a.repo / "api").read_text().strip()
    client = aioipfs.AsyncIPFS(maddr=api)
    try:
        version = await client.core.version()
        assert version["Version"] == "0.32.0"
        added = await client.add_bytes(b"bytes added by aioipfs")
        cid = added["Hash"]
        assert await client.cat(cid) == b"bytes added by aioipfs"
        text = await client.add_str("a string from aioipfs")
        assert await client.cat(text["Hash"]) == b"a string from aioipfs"
        await client.pin.rm(cid)
        with pytest.raises(aioipfs.APIError):
            await client.pin.ls(cid)
        pins = [p async for p in client.pin.add(cid)]
        assert pins[-1]["Pins"] == [cid]
        listed = await client.pin.ls(cid)
        assert listed["Keys"][cid]["Type"] == "recursive"
        removed = await client.pin.rm(cid)
        assert removed["Pins"] == [cid]
        gc = [x async for x in client.repo.gc()]
        assert gc, "the unpinned block is collected"
        ident = await client.core.id()
        assert ident["ID"] in ident["Addresses"][0]
    finally:
        await client.close()


async def test_cli_bootstrap_and_force_pnet(tmp_path: Path, daemons: list[Daemon]) -> None:
    a = Daemon(tmp_path / "a")
    await a.init("--swarm-key-gen")
    daemons.append(a)
    await a.start()
    a_addr = (await a.ok("id"))["Addresses"][0]

    # B lists A in Bootstrap: it connects by itself at start.
    b = Daemon(tmp_path / "b")
    await b.init("--swarm-key", str(a.repo / "swarm.key"), "--bootstrap", a_addr)
    daemons.append(b)
    await b.start()
    for _ in range(50):
        if (await b.ok("swarm/peers"))["Peers"]:
            break
        await asyncio.sleep(0.1)
    assert [p["Peer"] for p in (await b.ok("swarm/peers"))["Peers"]] == [a_addr.split("/p2p/")[1]]

    # The CLI drives the daemon through its API.
    src = tmp_path / "dir"
    (src / "sub").mkdir(parents=True)
    (src / "one.txt").write_bytes(b"one\n")
    (src / "sub" / "two.txt").write_bytes(b"two\n")
    (src / ".hidden").write_bytes(b"secret\n")
    rc, out = await Daemon.cli("--repo", str(a.repo), "add", "-r", str(src))
    assert rc == 0, out
    lines = out.splitlines()
    assert [ln.split()[2] for ln in lines] == ["dir/one.txt", "dir/sub/two.txt", "dir/sub", "dir"]
    root = lines[-1].split()[1]
    rc, quieter = await Daemon.cli("--repo", str(a.repo), "add", "-r", "-Q", str(src))
    assert quieter.strip() == root
    rc, out = await Daemon.cli("--repo", str(b.repo), "cat", f"/ipfs/{root}/sub/two.txt")
    assert rc == 0 and out == "two\n"  # fetched from A over the private swarm
    rc, out = await Daemon.cli("--repo", str(b.repo), "pin", "add", root)
    assert rc == 0 and out.strip() == f"pinned {root} recursively"
    rc, out = await Daemon.cli("--repo", str(b.repo), "pin", "ls", "--type", "recursive")
    assert out.split() == [root, "recursive"]
    rc, out = await Daemon.cli("--repo", str(b.repo), "swarm", "peers")
    assert out.strip().endswith(a_addr.split("/p2p/")[1])
    rc, out = await Daemon.cli("--repo", str(b.repo), "repo", "stat")
    assert rc == 0 and "NumObjects: 4" in out
    rc, out = await Daemon.cli("--repo", str(b.repo), "cat", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
    assert rc == 1 and "could not fetch block" in out

    # LIBP2P_FORCE_PNET=1 without a key: the daemon refuses to start and says why.
    c = Daemon(tmp_path / "c")
    await c.init()
    rc, out = await Daemon.cli("--repo", str(c.repo), "daemon", env={**os.environ, "LIBP2P_FORCE_PNET": "1"})
    assert rc == 1 and "LIBP2P_FORCE_PNET=1" in out and "refusing to start" in out


async def test_cli_add_reproduces_every_kubo_vector(tmp_path: Path, daemons: list[Daemon]) -> None:
    """`pincluster-ipfs add` (the CLI, through a running daemon) gives every CID of shared/vectors: each file,
    and the directory tree with every child, as `ipfs add` and `ipfs add -r` print them."""
    node = Daemon(tmp_path / "node")
    await node.init()
    daemons.append(node)
    await node.start()
    files = tmp_path / "files"
    files.mkdir()
    for name, vec in VECTORS["files"].items():
        path = files / name
        path.write_bytes(_vector_content(vec["content"]))
        assert hashlib.sha256(path.read_bytes()).hexdigest() == vec["sha256"]
        rc, out = await Daemon.cli("--repo", str(node.repo), "add", "-Q", str(path))
        assert rc == 0, out
        assert out.strip() == vec["cid"], name
    tree = VECTORS["directories"]["dir_tree"]
    root = tmp_path / "dir_tree"
    for rel, spec in tree["entries"].items():
        target = root / rel
        if rel.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_vector_content(spec))
    rc, out = await Daemon.cli("--repo", str(node.repo), "add", "-r", str(root))
    assert rc == 0, out
    got = {}
    for line in out.splitlines():
        _added, cid, name = line.split(" ", 2)
        got[name] = cid
    assert got["dir_tree"] == tree["cid"]
    for rel, cid in tree["children_cids"].items():
        assert got[f"dir_tree/{rel}"] == cid, rel


async def test_stats_bw_counts_what_the_swarm_moves(tmp_path: Path, daemons: list[Daemon]) -> None:
    """kubo's ``stats bw``: B fetches 2 MB from A; both count it, in total, for the other peer and for the swarm
    protocol, with per-second rates; the errors and the CLI's text are kubo's."""
    a, b = Daemon(tmp_path / "a"), Daemon(tmp_path / "b")
    await a.init("--swarm-key-gen")
    await b.init("--swarm-key", str(a.repo / "swarm.key"))
    daemons.extend([a, b])
    await asyncio.gather(a.start(), b.start())
    zero = {"TotalIn": 0, "TotalOut": 0, "RateIn": 0, "RateOut": 0}
    assert await b.lines("stats/bw") == [zero]  # no connection yet: nothing moved (kubo's JSON: 0, not 0.0)
    size = 2 * 1024 * 1024
    root = await a.add("data.bin", os.urandom(size))
    a_id, b_id = (await a.ok("id"))["ID"], (await b.ok("id"))["ID"]
    await b.ok("swarm/connect", {"arg": (await a.ok("id"))["Addresses"][0]})
    await b.lines("pin/add", {"arg": root})
    await asyncio.sleep(1.3)  # a rate sample (once a second)
    (b_total,) = await b.lines("stats/bw")
    (a_total,) = await a.lines("stats/bw")
    assert list(b_total) == ["TotalIn", "TotalOut", "RateIn", "RateOut"]
    assert b_total["TotalIn"] > size and a_total["TotalOut"] > size and b_total["RateIn"] > 0
    # one connection: what one side sent is what the other received, to the byte (give or take the moment)
    assert abs(a_total["TotalOut"] - b_total["TotalIn"]) < 4096
    (per_peer,) = await b.lines("stats/bw", {"peer": a_id})
    (per_proto,) = await b.lines("stats/bw", {"proto": "/pincluster/ipfs/1.0"})
    assert per_peer["TotalIn"] == per_proto["TotalIn"] and per_peer["TotalIn"] >= b_total["TotalIn"] - 4096
    assert await b.lines("stats/bw", {"t": "/ipfs/bitswap"}) == [zero]  # a protocol it does not speak
    assert await b.lines("stats/bw", {"p": b_id}) == [zero]  # itself: never a remote peer
    status, body = await b.post("stats/bw", {"peer": a_id, "proto": "/x"})
    assert (status, json.loads(body)) == (400, {"Message": "please only specify peer OR protocol", "Code": 1,
                                                "Type": "error"})
    status, body = await b.post("stats/bw", {"peer": "bad"})
    assert status == 500 and json.loads(body)["Message"].startswith("failed to parse peer ID: ")
    status, body = await b.post("stats/bw", {"interval": "xx"})
    assert (status, json.loads(body)["Message"]) == (500, 'time: invalid duration "xx"')
    # poll: a new object every interval, streamed, until the client hangs up
    async with aiohttp.ClientSession() as s, s.post(f"{b.url}/api/v0/stats/bw",
                                                     params={"poll": "true", "interval": "200ms"}) as r:
        assert r.headers["X-Chunked-Output"] == "1"
        got = [json.loads(await asyncio.wait_for(r.content.readline(), 5)) for _ in range(3)]
    assert [list(x) for x in got] == [list(zero)] * 3 and all(x["TotalIn"] >= b_total["TotalIn"] for x in got)
    # the CLI prints kubo's text
    rc, out = await Daemon.cli("--repo", str(b.repo), "stats", "bw")
    lines = out.splitlines()
    assert rc == 0 and lines[0] == "Bandwidth" and [ln.split(":")[0] for ln in lines[1:]] == [
        "TotalIn", "TotalOut", "RateIn", "RateOut"], out
    assert lines[1] in ("TotalIn: 2.1 MB", "TotalIn: 2.2 MB") and lines[3].endswith("B/s"), out
