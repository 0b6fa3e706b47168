"""``pincluster-ipfs``: run the embedded IPFS node alone, and talk to it (kubo-like commands).

``init`` and ``daemon`` work on the repo directly; every other command is a client of the running daemon's
kubo RPC API (found through the repo's ``api`` file, else its config's Addresses.API, or ``--api``), so they
behave exactly as any kubo client would see the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import signal
import sys
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import click

from pincluster.cli.ctl_format import humanize_bytes
from pincluster.errors import PinclusterError
from pincluster.ipfs.apiguard import auth_header
from pincluster.ipfs.config import NodeConfig
from pincluster.ipfs.swarmkey import generate_swarm_key, load_swarm_key
from pincluster.types.multiaddr import Multiaddr

DEFAULT_REPO = "~/.pincluster-ipfs"
REPO_ENV = "PINCLUSTER_IPFS_PATH"


class Ctx:
    def __init__(self, repo: Path, api: str | None, api_auth: str | None = None) -> None:
        self.repo = repo
        self.api = api
        self.api_auth = api_auth

    def api_url(self) -> str:
        text = self.api
        if text is None:
            api_file = self.repo / "api"
            text = api_file.read_text().strip() if api_file.exists() else str(NodeConfig.load(self.repo).api)
        if text.startswith("http://") or text.startswith("https://"):
            return text.rstrip("/")
        host, port = Multiaddr(text).tcp_host_port()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"


def fail(msg: str) -> None:
    click.echo(f"Error: {msg}", err=True)
    sys.exit(1)


@click.group()
@click.option("--repo", envvar=REPO_ENV, default=DEFAULT_REPO, show_default=True,
              help=f"node repo folder (env {REPO_ENV})")
@click.option("--api", default=None, help="API multiaddr or URL of a running node (default: from the repo)")
@click.option("--api-auth", default=None, metavar="SECRET",
              help="the secret of an API.Authorizations user of that node: bearer:TOKEN, basic:USER:PASSWORD "
                   "(as kubo's --api-auth)")
@click.pass_context
def main(ctx: click.Context, repo: str, api: str | None, api_auth: str | None) -> None:
    """Embedded IPFS node of pincluster (kubo RPC compatible, private swarm)."""
    ctx.obj = Ctx(Path(repo).expanduser(), api, api_auth)


# --- repo / daemon -------------------------------------------------------------------------------------------
@main.command()
@click.option("--api-addr", default="/ip4/127.0.0.1/tcp/5001", show_default=True, help="RPC API listen multiaddr")
@click.option("--swarm-addr", multiple=True, help="swarm listen multiaddr (repeatable; default /ip4/0.0.0.0/tcp/4001)")
@click.option("--bootstrap", multiple=True, help="bootstrap peer multiaddr with /p2p/<id> (repeatable)")
@click.option("--storage", default="blocks", show_default=True, help="block storage path (relative to the repo)")
@click.option("--swarm-key-path", default="swarm.key", show_default=True, help="swarm key path (relative to repo)")
@click.option("--swarm-key-gen", is_flag=True, help="generate a new swarm key (a new private network)")
@click.option("--swarm-key", "swarm_key_file", type=click.Path(exists=True, dir_okay=False),
              help="copy this swarm.key into the repo (join an existing private network)")
@click.option("--fetch-timeout", default="30s", show_default=True, help="block fetch idle timeout")
@click.pass_obj
def init(obj: Ctx, api_addr: str, swarm_addr: tuple[str, ...], bootstrap: tuple[str, ...], storage: str,
         swarm_key_path: str, swarm_key_gen: bool, swarm_key_file: str | None, fetch_timeout: str) -> None:
    """Create a repo: identity (Ed25519), config and optionally a swarm key."""
    repo = obj.repo
    if swarm_key_gen and swarm_key_file:
        fail("use either --swarm-key-gen or --swarm-key, not both")
    from pincluster.ipfs.node import init_repo

    try:
        key = generate_swarm_key() if swarm_key_gen else None
        if swarm_key_file:
            key = load_swarm_key(Path(swarm_key_file))
            if key is None:
                fail(f"cannot read {swarm_key_file}")
        cfg = init_repo(repo, api=api_addr, swarm=list(swarm_addr) or ["/ip4/0.0.0.0/tcp/4001"],
                        bootstrap=list(bootstrap), storage=storage, swarm_key=key, swarm_key_path=swarm_key_path,
                        fetch_timeout=fetch_timeout)
    except PinclusterError as exc:
        fail(str(exc))
        return
    click.echo(f"initialized IPFS node repo at {repo}")
    click.echo(f"peer identity: {cfg.peer_id}")
    if swarm_key_gen or swarm_key_file:
        click.echo(f"private network: swarm key at {cfg.resolve(repo, swarm_key_path)}")


@main.command()
@click.pass_obj
def daemon(obj: Ctx) -> None:
    """Run the node until SIGINT/SIGTERM."""
    try:
        asyncio.run(_daemon(obj.repo))
    except PinclusterError as exc:
        fail(str(exc))


async def _daemon(repo: Path) -> None:
    from pincluster.ipfs.node import IpfsNode

    node = await IpfsNode.open(repo)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
        assert node.api is not None and node.host is not None
        for a in node.swarm_addrs():
            click.echo(f"Swarm listening on {a}")
        click.echo(f"RPC API server listening on {node.api.multiaddr}")
        click.echo(f"peer identity: {node.peer_id}")
        click.echo("Daemon is ready", nl=True)
        sys.stdout.flush()
        await stop.wait()
        click.echo("Received interrupt signal, shutting down...")
    finally:
        await node.stop()


# --- client helpers ------------------------------------------------------------------------------------------
#: The ``Authorization`` header of this command's requests (from ``--api-auth``; "" for none).
_AUTHORIZATION: contextvars.ContextVar[str] = contextvars.ContextVar("authorization", default="")


async def _post(url: str, path: str, params: list[tuple[str, str]], data: Any = None) -> aiohttp.ClientResponse:
    auth = _AUTHORIZATION.get()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                                    headers={"Authorization": auth} if auth else None)
    try:
        resp = await session.post(f"{url}/api/v0/{path}", params=params, data=data)
    except aiohttp.ClientError as exc:
        await session.close()
        raise PinclusterError(f"cannot reach the node's API at {url} ({exc}); is `pincluster-ipfs daemon` running?")
    if resp.status != 200:
        body = await resp.read()
        await session.close()
        try:
            msg = json.loads(body)["Message"]
        except (ValueError, KeyError, TypeError):
            msg = body.decode("utf-8", "replace").strip()
        raise PinclusterError(msg)
    resp._pincluster_session = session  # type: ignore[attr-defined]
    return resp


async def _close(resp: aiohttp.ClientResponse) -> None:
    resp.release()
    await resp._pincluster_session.close()  # type: ignore[attr-defined]


async def _json(url: str, path: str, params: list[tuple[str, str]], data: Any = None) -> Any:
    resp = await _post(url, path, params, data)
    try:
        return json.loads(await resp.read())
    finally:
        await _close(resp)


async def _lines(url: str, path: str, params: list[tuple[str, str]], data: Any = None) -> AsyncIterator[Any]:
    resp = await _post(url, path, params, data)
    try:
        async for line in resp.content:
            if line.strip():
                yield json.loads(line)
        err = resp.headers.get("X-Stream-Error")
        if err:
            raise PinclusterError(err)
    finally:
        await _close(resp)


def run(obj: Ctx, coro_fn: Any) -> None:
    if obj.api_auth is not None:
        header = auth_header(obj.api_auth)
        if not header:
            fail(f"--api-auth {obj.api_auth!r}: expected bearer:TOKEN, basic:USER:PASSWORD, basic:BASE64 or TOKEN")
        _AUTHORIZATION.set(header)
    try:
        asyncio.run(coro_fn(obj.api_url()))
    except PinclusterError as exc:
        fail(str(exc))


# --- client commands -----------------------------------------------------------------------------------------
@main.command("id")
@click.pass_obj
def id_cmd(obj: Ctx) -> None:
    """Show the node's identity and addresses."""
    async def go(url: str) -> None:
        click.echo(json.dumps(await _json(url, "id", []), indent=2))

    run(obj, go)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-r", "--recursive", is_flag=True, help="add directories recursively")
@click.option("-q", "--quiet", is_flag=True, help="print only hashes")
@click.option("-Q", "--quieter", is_flag=True, help="print only the final hash")
@click.option("-n", "--only-hash", is_flag=True)
@click.option("-w", "--wrap-with-directory", is_flag=True)
@click.option("-H", "--hidden", is_flag=True, help="include files whose name starts with a dot")
@click.option("-t", "--trickle", is_flag=True)
@click.option("-s", "--chunker", default="size-262144", show_default=True)
@click.option("--cid-version", type=int, default=None)
@click.option("--raw-leaves/--no-raw-leaves", default=None)
@click.option("--hash", "hash_", default="sha2-256", show_default=True)
@click.option("--pin/--no-pin", default=True, show_default=True)
@click.option("--progress", is_flag=True)
@click.pass_obj
def add(obj: Ctx, paths: tuple[str, ...], recursive: bool, quiet: bool, quieter: bool, only_hash: bool,
        wrap_with_directory: bool, hidden: bool, trickle: bool, chunker: str, cid_version: int | None,
        raw_leaves: bool | None, hash_: str, pin: bool, progress: bool) -> None:
    """Add files or directories (streamed, kubo-identical CIDs)."""
    params = [("chunker", chunker), ("hash", hash_), ("pin", str(pin).lower()),
              ("only-hash", str(only_hash).lower()), ("wrap-with-directory", str(wrap_with_directory).lower()),
              ("hidden", str(hidden).lower()), ("trickle", str(trickle).lower()), ("progress", str(progress).lower()),
              ("quieter", str(quieter).lower()), ("quiet", str(quiet).lower())]
    if cid_version is not None:
        params.append(("cid-version", str(cid_version)))
    if raw_leaves is not None:
        params.append(("raw-leaves", str(raw_leaves).lower()))
    for p in paths:
        if Path(p).is_dir() and not recursive:
            fail(f"{p} is a directory, use the '-r' flag to specify directories")

    async def go(url: str) -> None:
        files: list[Any] = []
        writer = aiohttp.MultipartWriter("form-data")
        for p in paths:
            _add_parts(writer, Path(p), Path(p).name, hidden, files)
        last: dict[str, Any] | None = None
        try:
            async for ev in _lines(url, "add", params, writer):
                if "Hash" not in ev:
                    if progress:
                        click.echo(f"\r{ev.get('Name', '')}: {ev.get('Bytes', 0)} bytes", nl=False, err=True)
                    continue
                last = ev
                if quieter:
                    continue
                click.echo(ev["Hash"] if quiet else f"added {ev['Hash']} {ev['Name']}")
        finally:
            for fh in files:
                fh.close()
        if quieter and last is not None:
            click.echo(last["Hash"])

    run(obj, go)


def _add_parts(writer: aiohttp.MultipartWriter, path: Path, rel: str, hidden: bool, files: list[Any]) -> None:
    """go-ipfs-files layout: a directory part, then its entries (sorted), paths query-escaped."""
    disp = f'form-data; name="file"; filename="{urllib.parse.quote(rel, safe="")}"'
    if path.is_dir():
        part = writer.append(b"", {"Content-Type": "application/x-directory"})
        part.headers["Content-Disposition"] = disp
        for child in sorted(path.iterdir(), key=lambda c: c.name):
            if child.name.startswith(".") and not hidden:
                continue
            _add_parts(writer, child, f"{rel}/{child.name}", hidden, files)
    else:
        fh = open(path, "rb")  # noqa: SIM115 - streamed by aiohttp, closed after the request
        files.append(fh)
        part = writer.append(fh, {"Content-Type": "application/octet-stream"})
        part.headers["Content-Disposition"] = disp


@main.command("ls")
@click.argument("paths", nargs=-1, required=True)
@click.option("-v", "--headers", is_flag=True, help="Print table headers (Hash, Size, Name).")
@click.option("--resolve-type", type=click.BOOL, default=True, is_flag=False, flag_value=True,
              help="Resolve linked objects to find out their types (--resolve-type=false: do not).")
@click.option("--size", type=click.BOOL, default=True, is_flag=False, flag_value=True,
              help="Resolve linked objects to find out their file size (--size=false: do not).")
@click.option("-s", "--stream", is_flag=True, help="List each entry as the directory is walked.")
@click.option("-l", "--long", "long_", is_flag=True, help="Show the file mode and modification time too.")
@click.pass_obj
def ls(obj: Ctx, paths: tuple[str, ...], headers: bool, resolve_type: bool, size: bool, stream: bool,
       long_: bool) -> None:
    """List directory contents (or a file's chunks) as kubo's ``ipfs ls`` prints them."""
    from datetime import UTC, datetime

    from pincluster.ipfs.lstext import LsPrinter

    params = [("arg", p) for p in paths] + [("resolve-type", str(resolve_type).lower()),
                                             ("size", str(size).lower()), ("stream", str(stream).lower())]
    printer = LsPrinter(len(paths), headers=headers, size=size, long=long_, stream=stream, now=datetime.now(UTC))

    async def go(url: str) -> None:
        async for out in _lines(url, "ls", params):
            for line in printer.lines(out.get("Objects") or []):
                click.echo(line)

    run(obj, go)


@main.command()
@click.argument("path")
@click.option("-o", "--offset", type=int, default=0)
@click.option("-l", "--length", type=int, default=None)
@click.pass_obj
def cat(obj: Ctx, path: str, offset: int, length: int | None) -> None:
    """Write a file's content to stdout (fetched from peers if missing)."""
    async def go(url: str) -> None:
        params = [("arg", path), ("offset", str(offset))]
        if length is not None:
            params.append(("length", str(length)))
        resp = await _post(url, "cat", params)
        try:
            out = sys.stdout.buffer
            async for chunk in resp.content.iter_chunked(1 << 16):
                out.write(chunk)
            out.flush()
            err = resp.headers.get("X-Stream-Error")
            if err:
                raise PinclusterError(err)
        finally:
            await _close(resp)

    run(obj, go)


@main.group()
def pin() -> None:
    """Pin, unpin and list pins."""


@pin.command("add")
@click.argument("paths", nargs=-1, required=True)
@click.option("--recursive/--direct", default=True, show_default=True)
@click.option("--progress", is_flag=True)
@click.pass_obj
def pin_add(obj: Ctx, paths: tuple[str, ...], recursive: bool, progress: bool) -> None:
    async def go(url: str) -> None:
        params = [("arg", p) for p in paths] + [("recursive", str(recursive).lower()),
                                                ("progress", str(progress).lower())]
        async for ev in _lines(url, "pin/add", params):
            if "Progress" in ev and progress:
                click.echo(f"\rFetched/Processed {ev['Progress']} nodes", nl=False, err=True)
            if "Pins" in ev and progress:
                click.echo("", err=True)
            for c in ev.get("Pins") or []:
                click.echo(f"pinned {c} {'recursively' if recursive else 'directly'}")

    run(obj, go)


@pin.command("rm")
@click.argument("paths", nargs=-1, required=True)
@click.option("--recursive/--direct", default=True, show_default=True)
@click.pass_obj
def pin_rm(obj: Ctx, paths: tuple[str, ...], recursive: bool) -> None:
    async def go(url: str) -> None:
        res = await _json(url, "pin/rm", [("arg", p) for p in paths] + [("recursive", str(recursive).lower())])
        for c in res.get("Pins") or []:
            click.echo(f"unpinned {c}")

    run(obj, go)


@pin.command("ls")
@click.argument("paths", nargs=-1)
@click.option("-t", "--type", "ptype", default="all", show_default=True,
              type=click.Choice(["all", "recursive", "direct", "indirect"]))
@click.option("-q", "--quiet", is_flag=True)
@click.pass_obj
def pin_ls(obj: Ctx, paths: tuple[str, ...], ptype: str, quiet: bool) -> None:
    async def go(url: str) -> None:
        params = [("arg", p) for p in paths] + [("type", ptype), ("stream", "true")]
        async for ev in _lines(url, "pin/ls", params):
            click.echo(ev["Cid"] if quiet else f"{ev['Cid']} {ev['Type']}")

    run(obj, go)


@pin.command("update")
@click.argument("old")
@click.argument("new")
@click.option("--unpin/--no-unpin", default=True, show_default=True)
@click.pass_obj
def pin_update(obj: Ctx, old: str, new: str, unpin: bool) -> None:
    async def go(url: str) -> None:
        res = await _json(url, "pin/update", [("arg", old), ("arg", new), ("unpin", str(unpin).lower())])
        click.echo(f"updated {res['Pins'][0]} to {res['Pins'][1]}")

    run(obj, go)


@pin.command("verify")
@click.option("--verbose", is_flag=True)
@click.pass_obj
def pin_verify(obj: Ctx, verbose: bool) -> None:
    async def go(url: str) -> None:
        bad = 0
        async for ev in _lines(url, "pin/verify", [("verbose", str(verbose).lower())]):
            if ev.get("Ok"):
                click.echo(f"{ev['Cid']} ok")
            else:
                bad += 1
                click.echo(f"{ev['Cid']} broken")
                for n in ev.get("BadNodes") or []:
                    click.echo(f"  {n['Cid']}: {n['Err']}")
        if bad:
            raise PinclusterError(f"{bad} pin(s) are broken")

    run(obj, go)


@main.group()
def swarm() -> None:
    """Peers of the private network."""


@swarm.command("connect")
@click.argument("addrs", nargs=-1, required=True)
@click.pass_obj
def swarm_connect(obj: Ctx, addrs: tuple[str, ...]) -> None:
    async def go(url: str) -> None:
        res = await _json(url, "swarm/connect", [("arg", a) for a in addrs])
        for s in res.get("Strings") or []:
            click.echo(s)

    run(obj, go)


@swarm.command("disconnect")
@click.argument("addrs", nargs=-1, required=True)
@click.pass_obj
def swarm_disconnect(obj: Ctx, addrs: tuple[str, ...]) -> None:
    async def go(url: str) -> None:
        res = await _json(url, "swarm/disconnect", [("arg", a) for a in addrs])
        for s in res.get("Strings") or []:
            click.echo(s)

    run(obj, go)


@swarm.command("peers")
@click.pass_obj
def swarm_peers(obj: Ctx) -> None:
    async def go(url: str) -> None:
        res = await _json(url, "swarm/peers", [])
        for p in res.get("Peers") or []:
            click.echo(f"{p['Addr']}/p2p/{p['Peer']}" if p.get("Addr") else p["Peer"])

    run(obj, go)


@main.group()
def bootstrap() -> None:
    """The peers this node keeps connected (its config's Bootstrap list)."""


def _print_peers(prefix: str, res: Any) -> None:
    """kubo's ``bootstrapWritePeers``: one line per address, sorted, after ``prefix``."""
    for peer in sorted(res.get("Peers") or []):
        click.echo(prefix + peer)


@bootstrap.command("list")
@click.pass_obj
def bootstrap_list(obj: Ctx) -> None:
    """Show the bootstrap list."""
    async def go(url: str) -> None:
        _print_peers("", await _json(url, "bootstrap/list", []))

    run(obj, go)


@bootstrap.command("add")
@click.argument("peers", nargs=-1)
@click.pass_obj
def bootstrap_add(obj: Ctx, peers: tuple[str, ...]) -> None:
    """Add peers (``/ip4/…/tcp/…/p2p/<id>``) to the bootstrap list; dialled from now on."""
    async def go(url: str) -> None:
        _print_peers("added ", await _json(url, "bootstrap/add", [("arg", p) for p in peers]))

    run(obj, go)


@bootstrap.command("rm")
@click.argument("peers", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Remove every peer.")
@click.pass_obj
def bootstrap_rm(obj: Ctx, peers: tuple[str, ...], all_: bool) -> None:
    """Remove peers (``/p2p/<id>`` alone: every address of that peer) from the bootstrap list."""
    async def go(url: str) -> None:
        params = [("arg", p) for p in peers] + [("all", str(all_).lower())]
        _print_peers("removed ", await _json(url, "bootstrap/rm", params))

    run(obj, go)


@swarm.command("addrs")
@click.pass_obj
def swarm_addrs(obj: Ctx) -> None:
    """This node's own swarm addresses (with /p2p/<id>)."""
    async def go(url: str) -> None:
        res = await _json(url, "swarm/addrs/local", [("id", "true")])
        for s in res.get("Strings") or []:
            click.echo(s)

    run(obj, go)


@main.group()
def repo() -> None:
    """Repo statistics and garbage collection."""


@repo.command("stat")
@click.pass_obj
def repo_stat(obj: Ctx) -> None:
    async def go(url: str) -> None:
        res = await _json(url, "repo/stat", [])
        for k in ("NumObjects", "RepoSize", "StorageMax", "RepoPath", "Version"):
            click.echo(f"{k}: {res.get(k)}")

    run(obj, go)


@repo.command("gc")
@click.option("-q", "--quiet", is_flag=True)
@click.pass_obj
def repo_gc(obj: Ctx, quiet: bool) -> None:
    async def go(url: str) -> None:
        async for ev in _lines(url, "repo/gc", [("stream-errors", "true")]):
            if ev.get("Error"):
                click.echo(f"error: {ev['Error']}", err=True)
            elif not quiet:
                click.echo(f"removed {ev['Key']['/']}")

    run(obj, go)


@repo.command("version")
@click.pass_obj
def repo_version(obj: Ctx) -> None:
    async def go(url: str) -> None:
        click.echo(f"fs-repo@{(await _json(url, 'repo/version', []))['Version']}")

    run(obj, go)


@main.group()
def stats() -> None:
    """Statistics of the node."""


@stats.command("bw")
@click.option("-p", "--peer", default=None, help="Specify a peer to print bandwidth for.")
@click.option("-t", "--proto", default=None, help="Specify a protocol to print bandwidth for.")
@click.option("--poll", is_flag=True, help="Print bandwidth at an interval.")
@click.option("-i", "--interval", default="1s", show_default=True,
              help="Time interval to wait between updating output, if 'poll' is true.")
@click.pass_obj
def stats_bw(obj: Ctx, peer: str | None, proto: str | None, poll: bool, interval: str) -> None:
    """The swarm's traffic (in total, of one peer or of one protocol), as kubo's ``ipfs stats bw`` prints it."""
    params = [("interval", interval)] + [("poll", "true")] * poll
    params += [("peer", peer)] if peer is not None else []
    params += [("proto", proto)] if proto is not None else []

    async def go(url: str) -> None:
        if poll:
            click.echo("Total Up    Total Down  Rate Up     Rate Down")
        async for ev in _lines(url, "stats/bw", params):
            total_in, total_out, rate_in, rate_out = (humanize_bytes(max(0, int(ev.get(k) or 0))) for k in (
                "TotalIn", "TotalOut", "RateIn", "RateOut"))
            if not poll:
                click.echo(f"Bandwidth\nTotalIn: {total_in}\nTotalOut: {total_out}\nRateIn: {rate_in}/s\n"
                           f"RateOut: {rate_out}/s")
                return
            click.echo(f"{total_out:>8}    {total_in:>8}    {rate_out:>8}/s  {rate_in:>8}/s      \r", nl=False)

    run(obj, go)


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        main()
    os._exit(0)
