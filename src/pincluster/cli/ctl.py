"""``ipfs-cluster-ctl``: the command-line client of a cluster peer's REST API (spec §5).

Built on :class:`pincluster.client.Client`. Output is Go's, byte for byte (text formats in
:mod:`pincluster.cli.ctl_format`, ``--enc json`` as Go's ``MarshalIndent``), and so are the exit codes:
2 for errors answered by the API, 1 for transport and argument errors, 3 for unknown subcommands and 62
when ``--wait-timeout`` runs out. API errors go to stdout (as in Go); local errors to stderr.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from pincluster import CLUSTER_COMPAT_VERSION
from pincluster.api.interface import AddParams
from pincluster.cli import CLIError, fail
from pincluster.cli.ctl_format import (
    PinView,
    StatusView,
    format_added,
    format_alert,
    format_bandwidth,
    format_error,
    format_gpi,
    format_gpi_text_json,
    format_id,
    format_json,
    format_metric,
    format_metric_names,
    format_pin,
    format_pin_text_json,
    format_pin_view,
    format_repo_gc,
    format_status_view,
    format_version,
)
from pincluster.cli.urfave import DURATION, UrfaveGroup, command_paths
from pincluster.client import APIError, Client, TransportError, WaitTimeout
from pincluster.client.client import path_entries
from pincluster.client.transport import HTTPResponse
from pincluster.errors import InvalidInput, PinclusterError
from pincluster.types.cid import CID
from pincluster.types.codec import GlobalPinInfoText, PinText
from pincluster.types.gotime import ZERO_TIME, go_now, parse_duration_ns
from pincluster.types.models import AddedOutput, GlobalPinInfo, Pin, PinOptions
from pincluster.types.peer import PeerID
from pincluster.types.status import PinMode, PinType, TrackerStatus, filter_names

if TYPE_CHECKING:  # the importer is loaded only by `add` (it is a third of the ctl's start-up otherwise)
    from pincluster.ipfs.unixfs.importer import ImportEntry

__all__ = ["cli", "main"]

PROGRAM = "ipfs-cluster-ctl"
DEFAULT_HOST = "/ip4/127.0.0.1/tcp/9094"
T = TypeVar("T")


# --- errors and exit codes ------------------------------------------------------------------------------------
class DeadlineExceeded(CLIError):
    """``--wait-timeout`` ran out: Go's ``context deadline exceeded``, exit 62."""

    exit_code = 62


class APIExit(click.ClickException):
    """An API (or transport) error already printed on stdout; exit 2, or 1 when the code is 0."""

    def __init__(self, code: int) -> None:
        super().__init__("")
        self.api_code = code
        setattr(self, "exit_code", 2 if code != 0 else 1)  # noqa: B010  (click reads it per instance)

    def show(self, file: IO[Any] | None = None) -> None:
        pass


class StdoutClosed(click.ClickException):
    """The reader of stdout went away (``ctl status | head``): stop quietly with 141, as Go dies of SIGPIPE."""

    exit_code = 141

    def __init__(self) -> None:
        super().__init__("")
        try:  # later flushes (at exit) must not fail again on the closed pipe
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def show(self, file: IO[Any] | None = None) -> None:
        pass


# --- the --debug client -----------------------------------------------------------------------------------
def _debug(line: str) -> None:
    click.echo(line, err=True)


def _clip(data: bytes, limit: int = 4096) -> str:
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + f"… ({len(data)} bytes)"


class DebugClient(Client):
    """A client that prints every request and response (headers, body chunks, trailers) on stderr.

    The SDK has no hook for this yet, so it wraps ``Client._request`` (the one place every call goes
    through, redirects and host failover included). ``Authorization`` values are not printed.
    """

    async def _request(self, method: str, target: str, headers: list[tuple[str, str]],
                       body: bytes | AsyncIterable[bytes] | None) -> HTTPResponse:
        _debug(f"> {method} {self.endpoint}{target}")
        for k, v in headers:
            _debug(f"> {k}: {'<redacted>' if k.lower() == 'authorization' else v}")
        if isinstance(body, bytes | bytearray):
            if body:
                _debug("> " + _clip(bytes(body)))
        elif body is not None:
            _debug("> (request body streamed with chunked encoding)")
        started = time.monotonic()
        resp = await super()._request(method, target, headers, body)
        _debug(f"< {resp.status} from {self.endpoint} in {time.monotonic() - started:.3f} s")
        for k, v in resp.headers:
            _debug(f"< {k}: {v}")
        inner = resp.iter_body

        async def iter_body() -> AsyncIterator[bytes]:
            async for chunk in inner():
                _debug("< " + _clip(chunk).rstrip("\n"))
                yield chunk
            for k, v in resp.trailers:
                _debug(f"< (trailer) {k}: {v}")

        setattr(resp, "iter_body", iter_body)  # noqa: B010  (shadow the method on this response only)
        return resp


# --- global context -------------------------------------------------------------------------------------------
#: ``Ctl.write_all``: characters written at once, and the longest an item waits to be written.
_EMIT_BATCH = 64 * 1024
_EMIT_DELAY = 0.1


@dataclass
class Ctl:
    """Global flags, and the helpers every command uses to call the API and print the result."""

    hosts: list[str]
    https: bool | None
    verify: bool
    username: str | None
    password: str | None
    timeout: float | None
    debug: bool
    encoding: str

    @property
    def json(self) -> bool:
        return self.encoding == "json"

    def client(self) -> Client:
        cls = DebugClient if self.debug else Client
        try:
            return cls(self.hosts, username=self.username, password=self.password, https=self.https,
                       verify=self.verify, timeout=self.timeout)
        except InvalidInput as err:
            fail("parsing host multiaddress", err)

    @staticmethod
    def write(text: str) -> None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            raise StdoutClosed() from None

    def emit(self, obj: T, text: Callable[[T], str]) -> None:
        """Print one object as text or JSON."""
        self.write(format_json(obj) if self.json else text(obj))

    async def emit_all(self, items: AsyncIterator[T], text: Callable[[T], str]) -> None:
        """Print a stream as it arrives (JSON: one pretty object after another, as Go)."""
        await self.write_all(items, format_json if self.json else text)

    async def write_all(self, items: AsyncIterator[T], render: Callable[[T], str]) -> None:
        """Write ``render(item)`` for each item of a stream as it arrives.

        Items are written in batches: when ~64 KB are waiting, or 0.1 s after the first waiting item when the
        stream is slower. A write and flush per item cost more than formatting it (~10 µs each: a listing of
        100k items spent a second in them), and a reader still sees items within 0.1 s of their arrival."""
        pending: list[str] = []
        size = 0
        timer: asyncio.TimerHandle | None = None
        failed: list[StdoutClosed] = []

        def flush() -> None:
            nonlocal pending, size, timer
            if timer is not None:
                timer.cancel()
                timer = None
            if pending:
                data, pending, size = "".join(pending), [], 0
                self.write(data)

        def flush_later() -> None:  # a timer's callback: the error is raised by the loop below instead
            try:
                flush()
            except StdoutClosed as exc:
                failed.append(exc)

        loop = asyncio.get_running_loop()
        try:
            async for item in items:
                if failed:
                    raise failed[0]
                out = render(item)
                pending.append(out)
                size += len(out)
                if size >= _EMIT_BATCH:
                    flush()
                elif timer is None:
                    timer = loop.call_later(_EMIT_DELAY, flush_later)
        finally:
            if not failed:
                flush()
            elif timer is not None:
                timer.cancel()
        if failed:
            raise failed[0]

    def run(self, action: Callable[[Client], Awaitable[None]]) -> None:
        """Run ``action`` with a client; API and transport errors are printed on stdout as Go does."""

        async def go() -> None:
            client = self.client()
            try:
                await action(client)
            finally:
                await client.close()

        try:
            asyncio.run(go())
        except APIError as err:
            self.write(format_error(err.code, err.message, self.json))
            raise APIExit(err.code) from None
        except TransportError as err:
            self.write(format_error(0, str(err), self.json))
            raise APIExit(0) from None
        except click.ClickException:
            raise
        except PinclusterError as err:
            fail("", err)
        except OSError as err:  # a local file that cannot be read while it is being uploaded
            fail("", err)
        except KeyboardInterrupt:
            click.echo("error : context canceled", err=True)
            sys.exit(125)


pass_ctl = click.make_pass_decorator(Ctl)


# --- the application ------------------------------------------------------------------------------------------
def _parse_credentials(text: str) -> tuple[str, str]:
    user, _, password = text.partition(":")
    return user, password


DESCRIPTION = f"""
{PROGRAM} is a tool to manage IPFS Cluster nodes.

Use "{PROGRAM} help" to list all available commands and
"{PROGRAM} help <command>" to get usage information for a
specific one.

{PROGRAM} uses the IPFS Cluster API to perform requests and
display responses in a user-readable format. The location of the IPFS
Cluster server is assumed to be {DEFAULT_HOST}, but can be configured
with the --host option. If several multiaddresses are specified\x20
(comma-separated), requests will be sent to the first one and fail-over\x20
over to the others. This also works for dns-based addresses which resolve
to multiple values.

To use the secure libp2p-http API endpoint, use "--host" with\x20
the full cluster libp2p listener address, including the "/p2p/<peerID>"
part, or a /dnsaddr that resolves to it. Provide the cluster secret with\x20
--secret as needed.

For feedback, bug reports or any additional information, visit
https://github.com/ipfs-cluster/ipfs-cluster.
"""  # (\x20: Go's text has a space at the end of these lines)


@click.group(PROGRAM, cls=UrfaveGroup, usage="CLI for IPFS Cluster", description=DESCRIPTION,
             version=CLUSTER_COMPAT_VERSION)
@click.option("--host", "-l", default=DEFAULT_HOST, help="API endpoint multiaddresses (comma-separated)")
@click.option("--secret", default="",
              help="cluster secret (32 byte pnet-key) as needed. Only when using the LibP2P endpoint")
@click.option("--https", "-s", is_flag=True, help="use https to connect to the API")
@click.option("--no-check-certificate", is_flag=True,
              help="do not verify server TLS certificate. only valid with --https flag")
@click.option("--encoding", "--enc", "encoding", default="text", help="output format encoding [text, json]")
@click.option("--timeout", "-t", default=0, type=int, help="number of seconds to wait before timing out a request")
@click.option("--debug", "-d", is_flag=True, help="set debug log level")
@click.option("--basic-auth", envvar="CLUSTER_CREDENTIALS", default="",
              help="<username>[:<password>] specify BasicAuth credentials for server that\n"
                   "requires authorization. implies --https, which you can disable with --force-http")
@click.option("--force-http", "-f", is_flag=True, help="force HTTP. only valid when using BasicAuth")
@click.pass_context
def cli(ctx: click.Context, host: str, secret: str, https: bool, no_check_certificate: bool, encoding: str,
        timeout: int, debug: bool, basic_auth: str, force_http: bool) -> None:
    if encoding not in ("text", "json"):
        fail("", "unsupported encoding")
    hosts = [h.strip() for h in host.split(",") if h.strip()]
    if not hosts:
        fail("parsing host multiaddress", "no host given")
    for h in hosts:
        if "/p2p/" in h or "/ipfs/" in h or h.startswith("/dnsaddr/"):
            fail("parsing host multiaddress",
                 f"{h}: libp2p API endpoints are not supported by pincluster; "
                 "use the peer's REST API address, e.g. /ip4/127.0.0.1/tcp/9094")
    if secret:
        try:
            ok = len(bytes.fromhex(secret)) == 32
        except ValueError:
            ok = False
        if not ok:
            fail("parsing secret", "the cluster secret must be 32 bytes in hex (64 characters)")
    use_https: bool | None = True if https else None
    user: str | None = None
    password: str | None = None
    if basic_auth:
        user, password = _parse_credentials(basic_auth)
        multiaddr_hosts = all(h.startswith("/") for h in hosts)
        if not https and not force_http and multiaddr_hosts:
            use_https = True
            if debug:
                _debug("SSL automatically enabled with basic auth credentials. Set \"force-http\" to disable")
    ctx.obj = Ctl(hosts=hosts, https=use_https, verify=not no_check_certificate, username=user,
                  password=password, timeout=float(timeout) if timeout > 0 else None, debug=debug,
                  encoding=encoding)


# --- argument helpers -----------------------------------------------------------------------------------------
def _cid(text: str) -> CID:
    try:
        return CID.decode(text)
    except InvalidInput as err:
        fail("parsing cid", err)


def _ipfs_path(arg: str) -> str:
    """A pin argument as an IPFS path, as Go's client reads it: an argument that is not a path is taken as
    one under ``/ipfs/``, so ``<cid>`` and ``<cid>/sub/dir`` both work (the ctl always uses the path routes).
    A path that does not parse stops the command with ``error : invalid path "<path>": <why>``, as Go's."""
    path = arg if arg.startswith("/") else "/ipfs/" + arg
    parts = path[1:].split("/")
    if len(parts) < 2 or not parts[1]:
        fail("", f'invalid path "{path}": path does not have enough components')
    if parts[0] not in ("ipfs", "ipns", "ipld"):
        fail("", f'invalid path "{path}": unknown namespace "{parts[0]}" (use /ipfs/<cid>[/…], /ipns/<name>[/…] '
                 "or /ipld/<cid>[/…])")
    if parts[0] != "ipns":
        try:
            CID.decode(parts[1])
        except InvalidInput as err:
            fail("", f'invalid path "{path}": {err}')
    return path


def _duration_ns(text: str, doing: str) -> int:
    try:
        return parse_duration_ns(text)
    except InvalidInput as err:
        fail(doing, err)


def _wait_timeout(text: str) -> float:
    """``--wait-timeout``: a Go duration (``30s``, ``2m``); a bare number is taken as seconds."""
    if not text:
        return 0.0
    try:
        return float(text)
    except ValueError:
        return _duration_ns(text, "parsing wait-timeout") / 1e9


def _expire_at(text: str) -> datetime:
    if not text:
        return ZERO_TIME
    ns = _duration_ns(text, "parsing expire-in")
    return go_now() + timedelta(microseconds=ns // 1000)


def _metadata(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            fail("parsing metadata", "metadata were not in the format key=value")
        out[key] = value
    return out


def _allocations(text: str) -> tuple[PeerID, ...] | None:
    if not text:
        return None
    out = []
    for part in text.split(","):
        try:
            out.append(PeerID.decode(part.strip()))
        except InvalidInput:
            fail("decoding allocations", "some peer IDs could not be decoded")
    return tuple(out)


def _mode(text: str) -> PinMode:
    if text not in ("recursive", "direct", ""):
        fail("parsing mode", f"unknown pin mode {text!r}: use recursive or direct")
    return PinMode.from_string(text)


async def _wait(client: Client, cid: CID, target: TrackerStatus, limit: int, timeout: float) -> GlobalPinInfo:
    """Poll the status every second until ``target`` (spec §5.2 "Waiting"); the timeout counts only if > 1 s."""
    try:
        return await client.wait_for(cid, target, limit=limit, interval=1.0,
                                     timeout=timeout if timeout > 1 else None)
    except WaitTimeout:
        raise DeadlineExceeded("waiting for pin status", "context deadline exceeded") from None
    except APIError as err:
        fail("waiting for pin status", err.message)
    except TransportError as err:
        fail("waiting for pin status", err)


async def _after_pin(c: Ctl, client: Client, pin: Pin, target: TrackerStatus, no_status: bool, wait: bool,
                     wait_limit: int, wait_timeout: float) -> None:
    """Go's ``handlePinResponseFormatFlags``: wait first when asked (also with ``--no-status``), then print the
    pin itself, or the status the wait ended with (or the one fetched after 1 s)."""
    status: GlobalPinInfo | None = None
    if wait:
        limit = pin.replication_factor_min if target == TrackerStatus.PINNED else 0
        if wait_limit:
            limit = wait_limit
        status = await _wait(client, pin.cid, target, limit, wait_timeout)
    if no_status:
        c.emit(pin, format_pin)
        return
    if status is None:
        await asyncio.sleep(1)
        status = await client.status(pin.cid, local=False)
    c.emit(status, format_gpi)


#: Go's usage strings of the waiting flags (``waitFlagDesc``, ``waitLimitFlagDesc``, ``waitTimeoutFlagDesc``)
WAIT_USAGE = "Wait for the pin to reach the minimum replication factor before returning"
WAIT_LIMIT_USAGE = "How many peers should reach the desired status to finish waiting"
WAIT_TIMEOUT_USAGE = "How long to --wait (in seconds). Default: forever"


def _wait_options(doing: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--no-status``, ``--wait``, ``--wait-limit`` and ``--wait-timeout`` of ``pin add|rm|update`` (``doing``:
    Go's word for the command in the ``--no-status`` usage)."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option("--wait-timeout", "--wt", "wait_timeout", default="0s", type=DURATION,
                         help=WAIT_TIMEOUT_USAGE)(f)
        f = click.option("--wait-limit", "--wl", "wait_limit", default=0, type=int, help=WAIT_LIMIT_USAGE)(f)
        f = click.option("--wait", "-w", is_flag=True, help=WAIT_USAGE)(f)
        return click.option("--no-status", "--ns", "no_status", is_flag=True,
                            help=f"Prevents fetching pin status after {doing} (faster, quieter)")(f)

    return decorate


def _local_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """Go's ``localFlag()``."""
    return click.option("--local", is_flag=True, help="run operation only on the contacted peer")(f)


# --- id, peers, version ---------------------------------------------------------------------------------------
@cli.command("id", usage="Retrieve peer information", description="""
This command displays information about the peer that the tool is contacting
(usually running in localhost).
""")
@pass_ctl
def id_cmd(c: Ctl) -> None:
    async def go(client: Client) -> None:
        c.emit(await client.id(), format_id)

    c.run(go)


@cli.group(usage="List and manage IPFS Cluster peers", description="List and manage IPFS Cluster peers")
def peers() -> None:
    pass


@peers.command("ls", usage="list the nodes participating in the IPFS Cluster", args_usage=" ", description="""
This command provides a list of the ID information of all the peers in the Cluster.
""")
@pass_ctl
def peers_ls(c: Ctl) -> None:
    async def go(client: Client) -> None:
        await c.emit_all(client.peers(), format_id)

    c.run(go)


@peers.command("rm", usage="remove a peer from the Cluster", args_usage="<peer ID>", description="""
This command removes a peer from the cluster. If the peer is online, it will
automatically shut down. All other cluster peers should be online for the
operation to succeed, otherwise some nodes may be left with an outdated list of
cluster peers.
""")
@click.argument("peer_id", required=False, default="")
@pass_ctl
def peers_rm(c: Ctl, peer_id: str) -> None:
    try:
        pid = PeerID.decode(peer_id)
    except InvalidInput as err:
        fail("parsing peer ID", err)

    async def go(client: Client) -> None:
        await client.peer_rm(pid)

    c.run(go)


# --- add --------------------------------------------------------------------------------------------------------
def _is_url(p: str) -> bool:
    return p.startswith(("http://", "https://"))


def _url_name(url: str) -> str:
    name = os.path.basename(urllib.parse.urlsplit(url).path.rstrip("/"))
    return urllib.parse.unquote(name) or "index"


async def _url_chunks(url: str) -> AsyncIterator[bytes]:
    """Stream a web file into the upload (Go's ctl adds URLs as files named after the URL's last segment)."""
    import aiohttp

    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            if resp.status >= 400:
                raise InvalidInput(f"fetching {url}: HTTP {resp.status}")
            async for chunk in resp.content.iter_chunked(256 * 1024):
                yield chunk
    except aiohttp.ClientError as err:
        raise InvalidInput(f"fetching {url}: {err}") from None


async def _entries(paths: Sequence[str], recursive: bool, hidden: bool) -> AsyncIterator[ImportEntry]:
    from pincluster.ipfs.unixfs.importer import ImportEntry

    for p in paths:
        if _is_url(p):
            yield ImportEntry(path=_url_name(p), kind="file", chunks=_url_chunks(p))
        else:
            async for e in path_entries([p], recursive=recursive, hidden=hidden):
                yield e


def _local_size(paths: Sequence[str], hidden: bool) -> int | None:
    """Total bytes to upload (for the progress bar); None when a URL makes it unknown."""
    total = 0
    for p in paths:
        if _is_url(p):
            return None
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                if not hidden:
                    dirs[:] = [d for d in dirs if not d.startswith(".")]
                total += sum(os.path.getsize(os.path.join(root, f)) for f in files
                             if hidden or not f.startswith("."))
        else:
            total += os.path.getsize(p)
    return total


def _check_paths(paths: Sequence[str], recursive: bool) -> None:
    for p in paths:
        if _is_url(p):
            continue
        if not os.path.exists(p):
            fail("", f"{p}: no such file or directory")
        if os.path.isdir(p) and not recursive:
            fail("", f"{p} is a directory: use -r to add directories")


class _Bar:
    """A progress bar on stderr (rich), shown only when the output is a terminal."""

    def __init__(self, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), console=Console(stderr=True), transient=True)
        self._task = self._progress.add_task("adding", total=total)
        self._done: dict[str, int] = {}

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, ev: AddedOutput) -> None:
        self._done[ev.name] = ev.bytes
        self._progress.update(self._task, completed=sum(self._done.values()))


@cli.command(usage="Add a file or directory to ipfs and pin it in the cluster", args_usage="<path>", description="""
Add allows to add and replicate content to several ipfs daemons, performing
a Cluster Pin operation on success. It takes elements from local paths as
well as from web URLs (accessed with a GET request). Providing several
arguments will automatically set --wrap-in-directory.

Cluster "add" works, by default, just like "ipfs add" and has similar options
in terms of DAG layout, chunker, hash function etc. It also supports adding
CAR files directly (--format car), as long as they have a single root. When
adding CAR files, all the options related to dag-building are ignored.

Added content will be allocated and sent block by block to the peers that
should pin it (among which may not necessarily be the local ipfs daemon).
Once all the blocks have arrived, they will be "cluster-pinned". This makes\x20
cluster add slower than a local ipfs add, but the result is a fully replicated
on completion. If you prefer faster adding, use the --local flag to add\x20
directly to the local IPFS node and pin in the destinations after that.\x20
Note that the local IPFS node may not be among the destinations, which will
leave the unpinned content in it.

Optional replication-min and replication-max factors can be provided: -1 means
"pin everywhere" and 0 means use cluster's default setting (i.e., replication
factor set in config). Positive values indicate how many peers should pin this
content.
""")  # (\x20: Go's text has a space at the end of these lines)
@click.argument("paths", nargs=-1)
@click.option("--recursive", "-r", is_flag=True, help="Add directory paths recursively")
@click.option("--quiet", "-q", is_flag=True, help="Write only hashes to output (one per line)")
@click.option("--quieter", "-Q", is_flag=True, help="Write only final hash to output")
@click.option("--no-stream", is_flag=True, help="Buffer output locally. Produces a valid JSON array with --enc=json.")
@click.option("--local", is_flag=True, help="Add to local peer but pin normally")
@click.option("--name", "-n", default="", help="Sets a name for this pin")
@click.option("--replication-min", "--rmin", "rmin", default=0, type=int,
              help="Sets the minimum replication factor for pinning this file")
@click.option("--replication-max", "--rmax", "rmax", default=0, type=int,
              help="Sets the maximum replication factor for pinning this file")
@click.option("--expire-in", default="", help="Duration after which the pin should be unpinned automatically")
@click.option("--metadata", multiple=True, help="Pin metadata: key=value. Can be added multiple times")
@click.option("--allocations", "--allocs", "allocations", default="", help="Optional comma-separated list of peer IDs")
@click.option("--no-pin", is_flag=True, help="Do not pin after adding")
@click.option("--wait", is_flag=True, help=WAIT_USAGE)
@click.option("--wait-timeout", "--wt", "wait_timeout", default="0s", type=DURATION, help=WAIT_TIMEOUT_USAGE)
@click.option("--wrap-with-directory", "-w", is_flag=True, help="Wrap a with a directory object")
@click.option("--format", "fmt", default="unixfs", help="'unixfs' (add as unixfs DAG), 'car' (import CAR file)")
@click.option("--layout", default="", help="Dag layout to use for dag generation: balanced or trickle")
@click.option("--hidden", "-H", is_flag=True, help="Include files that are hidden.  Only takes effect on recursive add")
@click.option("--chunker", "-s", default="size-262144", help="'size-<size>' or 'rabin-<min>-<avg>-<max>'")
@click.option("--raw-leaves", is_flag=True, help="Use raw blocks for leaves (experimental)")
@click.option("--cid-version", default=0, type=int, help="CID version. Non default implies raw-leaves")
@click.option("--hash", "hash_", default="sha2-256", help="Hash function to use. Implies cid-version=1")
@click.option("--nocopy", is_flag=True, help="Add the URL using filestore. Implies raw-leaves. (experimental)")
@pass_ctl
def add(c: Ctl, paths: tuple[str, ...], recursive: bool, quiet: bool, quieter: bool, no_stream: bool, layout: str,
        wrap_with_directory: bool, fmt: str, hidden: bool, chunker: str, raw_leaves: bool, cid_version: int,
        hash_: str, nocopy: bool, local: bool, name: str, rmin: int, rmax: int, expire_in: str,
        metadata: tuple[str, ...], allocations: str, no_pin: bool, wait: bool, wait_timeout: str) -> None:
    if not paths:
        fail("", "need at least one path")
    wrap = wrap_with_directory or len(paths) > 1
    if hash_ != "sha2-256":
        cid_version = 1
    if cid_version > 0 or nocopy:
        raw_leaves = True
    if wrap and fmt == "car":
        fail("", "only a single CAR file can be added and wrap-with-directory is not supported")
    if fmt not in ("unixfs", "car"):
        fail("", f"format parameter is invalid: {fmt!r} (use unixfs or car)")
    if layout not in ("", "balanced", "trickle"):
        fail("", f"layout parameter is invalid: {layout!r} (use balanced or trickle)")
    if nocopy and not all(map(_is_url, paths)):
        fail("", "nocopy option is only valid for URLs")  # Go's client: the filestore only takes URLs here
    _check_paths(paths, recursive)
    timeout = _wait_timeout(wait_timeout)
    pin_opts = PinOptions(replication_factor_min=rmin, replication_factor_max=rmax, name=name,
                          user_allocations=_allocations(allocations), expire_at=_expire_at(expire_in),
                          metadata=_metadata(metadata))
    show_bar = (not c.json and not quiet and not quieter and sys.stdout.isatty() and sys.stderr.isatty())
    from pincluster.ipfs.unixfs.importer import AddOptions

    try:
        io = AddOptions(cid_version=cid_version, raw_leaves=raw_leaves, chunker=chunker, trickle=layout == "trickle",
                        hash=hash_, wrap_with_directory=wrap, hidden=hidden, progress=show_bar)
    except InvalidInput as err:
        fail("", err)
    params = AddParams(import_options=io, pin_options=pin_opts, local=local, no_pin=no_pin, format=fmt,
                       extra={"recursive": "true" if recursive else "false", "nocopy": "true" if nocopy else "false"})
    quiet = quiet or quieter

    async def go(client: Client) -> None:
        buffered: list[AddedOutput] = []
        last: AddedOutput | None = None
        bar = _Bar(_local_size(paths, hidden)) if show_bar else None
        try:
            if bar is not None:
                bar.__enter__()
            async for ev in client.add(_entries(paths, recursive, hidden), params):
                if show_bar and ev.cid is None:
                    if bar is not None:
                        bar.update(ev)
                    continue
                last = ev
                if no_stream:
                    buffered.append(ev)
                elif not quieter:
                    c.emit(ev, lambda e: format_added(e, quiet))
        finally:
            if bar is not None:
                bar.__exit__()
            if buffered:
                if quieter:  # Go prints only the last item, as a one-element list in JSON
                    buffered = buffered[-1:]
                if c.json:
                    c.write(format_json(buffered))
                else:
                    c.write("".join(format_added(e, quiet) for e in buffered))
            elif quieter and last is not None:
                c.emit(last, lambda e: format_added(e, True))
        if wait and not no_pin and last is not None and last.cid is not None:
            pin = await client.allocation(last.cid)
            await _wait(client, last.cid, TrackerStatus.PINNED, pin.replication_factor_min, timeout)

    c.run(go)


# --- pin ----------------------------------------------------------------------------------------------------------
@cli.group(usage="Pin and unpin and list items in IPFS Cluster",
           description="Pin and unpin and list items in IPFS Cluster")
def pin() -> None:
    pass


@pin.command("add", usage="Pin an item in the cluster", args_usage="<CID|Path>", description="""
This command tells IPFS Cluster to start managing a CID. Depending on
the pinning strategy, this will trigger IPFS pin requests. The CID will
become part of the Cluster's state and will tracked from this point.

When the request has succeeded, the command returns the status of the CID
in the cluster and should be part of the list offered by "pin ls".

An optional replication factor can be provided: -1 means "pin everywhere"
and 0 means use cluster's default setting (i.e., replication factor set in
config). Positive values indicate how many peers should pin this content.

An optional allocations argument can be provided, allocations should be a
comma-separated list of peer IDs on which we want to pin. Peers in allocations
are prioritized over automatically-determined ones, but replication factors
would still be respected.
""")
@click.argument("arg", required=False, default="")
@click.option("--replication", "-r", default=0, type=int,
              help="Sets a custom replication factor (overrides -rmax and -rmin)")
@click.option("--replication-min", "--rmin", "rmin", default=0, type=int,
              help="Sets the minimum replication factor for this pin")
@click.option("--replication-max", "--rmax", "rmax", default=0, type=int,
              help="Sets the maximum replication factor for this pin")
@click.option("--allocations", "--allocs", "allocations", default="", help="Optional comma-separated list of peer IDs")
@click.option("--name", "-n", default="", help="Sets a name for this pin")
@click.option("--mode", default="recursive", help="Select a way to pin: recursive or direct")
@click.option("--expire-in", default="", help="Duration after which pin should be unpinned automatically")
@click.option("--metadata", multiple=True, help="Pin metadata: key=value. Can be added multiple times")
@_wait_options("pinning")
@pass_ctl
def pin_add(c: Ctl, arg: str, replication: int, rmin: int, rmax: int, allocations: str, name: str, mode: str,
            expire_in: str, metadata: tuple[str, ...], no_status: bool, wait: bool, wait_limit: int,
            wait_timeout: str) -> None:
    path = _ipfs_path(arg)
    if replication:
        rmin = rmax = replication
    opts = PinOptions(replication_factor_min=rmin, replication_factor_max=rmax, name=name, mode=_mode(mode),
                      user_allocations=_allocations(allocations), expire_at=_expire_at(expire_in),
                      metadata=_metadata(metadata))
    timeout = _wait_timeout(wait_timeout)

    async def go(client: Client) -> None:
        p = await client.pin_path(path, opts)
        await _after_pin(c, client, p, TrackerStatus.PINNED, no_status, wait, wait_limit, timeout)

    c.run(go)


@pin.command("rm", usage="Unpin an item from the cluster", args_usage="<CID|Path>", description="""
This command tells IPFS Cluster to no longer manage a CID. This will
trigger unpinning operations in all the IPFS nodes holding the content.

When the request has succeeded, the command returns the status of the CID
in the cluster. The CID should disappear from the list offered by "pin ls",
although unpinning operations in the cluster may take longer or fail.
""")
@click.argument("arg", required=False, default="")
@_wait_options("unpinning")
@pass_ctl
def pin_rm(c: Ctl, arg: str, no_status: bool, wait: bool, wait_limit: int, wait_timeout: str) -> None:
    path = _ipfs_path(arg)
    timeout = _wait_timeout(wait_timeout)

    async def go(client: Client) -> None:
        p = await client.unpin_path(path)
        await _after_pin(c, client, p, TrackerStatus.UNPINNED, no_status, wait, wait_limit, timeout)

    c.run(go)


@pin.command("update", usage="Pin a new item based on an existing one",
             args_usage="<existing-CID> <new-CID|Path>", description="""
This command will add a new pin to the cluster taking all the options from an
existing one, including name. This means that the new pin will bypass the
allocation process and will be allocated to the same peers as the existing
one.

The cluster peers will try to Pin the new item on IPFS using the "pin update"
command. This is especially efficient when the content of two pins (their DAGs)
are similar.

Unlike the "pin update" command in the ipfs daemon, this will not unpin the
existing item from the cluster. Please run "pin rm" for that.
""")
@click.argument("existing", required=False, default="")
@click.argument("new", required=False, default="")
@click.option("--name", "-n", default="", help="Sets a name for this updated pin")
@click.option("--expire-in", default="",
              help="Duration after which the pin should be unpinned automatically after updating")
@_wait_options("updating")
@pass_ctl
def pin_update(c: Ctl, existing: str, new: str, name: str, expire_in: str, no_status: bool, wait: bool,
               wait_limit: int, wait_timeout: str) -> None:
    try:
        from_cid = CID.decode(existing)
    except InvalidInput as err:
        fail("parsing from Cid", err)
    path = _ipfs_path(new)
    opts = PinOptions(pin_update=from_cid, name=name, expire_at=_expire_at(expire_in))
    timeout = _wait_timeout(wait_timeout)

    async def go(client: Client) -> None:
        p = await client.pin_path(path, opts)
        await _after_pin(c, client, p, TrackerStatus.PINNED, no_status, wait, wait_limit, timeout)

    c.run(go)


def _type_filter(text: str) -> str:
    """``--filter`` of ``pin ls`` as the Go client sends it: ``all`` or the known type names."""
    bits = 0
    for part in text.split(","):
        bits |= PinType.from_filter_string(part.strip()).bits
    if bits & PinType.ALL.bits == PinType.ALL.bits:
        return "all"
    names = [t.value for t in (PinType.DATA, PinType.META, PinType.CLUSTER_DAG, PinType.SHARD) if bits & t.bits]
    return ",".join(names) if names else text  # nothing known: let the API say "invalid filter value"


@pin.command("ls", usage="List items in the cluster pinset", args_usage="[CID]", description="""
This command will list the CIDs which are tracked by IPFS Cluster and to
which peers they are currently allocated. This list does not include
any monitoring information about the IPFS status of the CIDs, it
merely represents the list of pins which are part of the shared state of
the cluster. For IPFS-status information about the pins, use "status".

The filter only takes effect when listing all pins. The possible values are:
  - all (default)
  - pin (normal pins, recursive or direct)
  - meta-pin (sharded pins)
  - clusterdag-pin (sharding-dag root pins)
  - shard-pin (individual shard pins)
""")
@click.argument("cid", required=False, default="")
@click.option("--filter", "flt", default="all", help="Comma separated list of pin types. See help above.")
@pass_ctl
def pin_ls(c: Ctl, cid: str, flt: str) -> None:
    one = _cid(cid) if cid else None

    async def go(client: Client) -> None:
        if one is not None:
            c.emit(await client.allocation(one), format_pin)
        elif c.json:  # every field, written again from the texts (see PinText)
            await c.write_all(client.allocations(_type_filter(flt), view=PinText), format_pin_text_json)
        else:  # the fields the line shows only (see PinView)
            await c.write_all(client.allocations(_type_filter(flt), view=PinView), format_pin_view)

    c.run(go)


# --- status, recover, sync ------------------------------------------------------------------------------------------
def _status_filter(text: str) -> TrackerStatus:
    value = TrackerStatus.from_string(text)
    if value == 0 and text != "":
        fail("parsing filter flag", "invalid filter name")
    return value


async def _print_status(c: Ctl, client: Client, cids: Sequence[CID], local: bool, flt: TrackerStatus) -> None:
    if len(cids) == 1:
        c.emit(await client.status(cids[0], local=local), format_gpi)
    elif c.json:  # every field, written again from the texts (see GlobalPinInfoText)
        items = (client.status_cids(cids, local=local, view=GlobalPinInfoText) if cids
                 else client.status_all(flt, local=local, view=GlobalPinInfoText))
        await c.write_all(items, format_gpi_text_json)
    else:  # the fields the text shows only (see StatusView)
        views = (client.status_cids(cids, local=local, view=StatusView) if cids
                 else client.status_all(flt, local=local, view=StatusView))
        await c.write_all(views, format_status_view)


_STATUS_VALUES = "\n".join(sorted(f"  - {name}" for name in filter_names()))


@cli.command(usage="Retrieve the status of tracked items", args_usage="[CID1] [CID2]...", description="""
This command retrieves the status of the CIDs tracked by IPFS
Cluster, including which member is pinning them and any errors.
If one of several CIDs are provided, the status will be only fetched\x20
for a single item.  Metadata CIDs are included in the status response.

When the --local flag is passed, it will only fetch the status from the
contacted cluster peer. By default, status will be fetched from all peers.

When the --filter flag is passed, it will only fetch the peer information
where status of the pin matches at least one of the filter values (a comma
separated list). The following are valid status values:

""" + _STATUS_VALUES)  # (\x20: Go's text has a space at the end of that line)
@click.argument("cids", nargs=-1)
@_local_option
@click.option("--filter", "flt", default="", help="comma-separated list of filters")
@pass_ctl
def status(c: Ctl, cids: tuple[str, ...], local: bool, flt: str) -> None:
    parsed = [_cid(x) for x in cids]
    value = _status_filter(flt) if not parsed else TrackerStatus.UNDEFINED

    async def go(client: Client) -> None:
        await _print_status(c, client, parsed, local, value)

    c.run(go)


@cli.command(usage="Recover tracked items in error state", args_usage="[CID]", description="""
This command asks Cluster peers to re-track or re-forget CIDs in
error state, usually because the IPFS pin or unpin operation has failed.

The command will wait for any operations to succeed and will return the status
of the item upon completion. Note that, when running on the full sets of tracked
CIDs (without argument), it may take a considerably long time.

When the --local flag is passed, it will only trigger recover
operations on the contacted peer (as opposed to on every peer).
""")
@click.argument("cid", required=False, default="")
@_local_option
@pass_ctl
def recover(c: Ctl, cid: str, local: bool) -> None:
    one = _cid(cid) if cid else None

    async def go(client: Client) -> None:
        if one is not None:
            c.emit(await client.recover(one, local=local), format_gpi)
        else:
            await c.emit_all(client.recover_all(local=local), format_gpi)

    c.run(go)


@cli.command(usage="Sync the status of tracked items with IPFS (pincluster only)", args_usage="[CID1] [CID2]...",
             description="""
This command makes the status of the given CIDs (or of every tracked CID) agree
with what each IPFS daemon really has, then prints it as "status" does.

IPFS Cluster 1.x removed "sync"; pincluster keeps it: every peer re-reads the
IPFS pin state of the CIDs through "recover", which re-queues what is missing.
""")
@click.argument("cids", nargs=-1)
@_local_option
@pass_ctl
def sync(c: Ctl, cids: tuple[str, ...], local: bool) -> None:
    parsed = [_cid(x) for x in cids]

    async def go(client: Client) -> None:
        if parsed:
            for one in parsed:
                await client.recover(one, local=local)
        else:
            async for _ in client.recover_all(local=local):
                pass
        await _print_status(c, client, parsed, local, TrackerStatus.UNDEFINED)

    c.run(go)


# --- version (defined here: Go's ctl lists it after recover), health, ipfs ------------------------------------------
@cli.command(usage="Retrieve cluster version", args_usage=" ", description="""
This command retrieves the IPFS Cluster version and can be used
to check that it matches the CLI version (shown by -v).
""")
@pass_ctl
def version(c: Ctl) -> None:

    async def go(client: Client) -> None:
        c.emit(await client.version(), format_version)

    c.run(go)


@cli.group(usage="Cluster monitoring information", description="Cluster monitoring information")
def health() -> None:
    pass


@health.command("graph", usage="create a graph displaying connectivity of cluster peers", description="""
This command queries all connected cluster peers and their ipfs peers to generate a
graph of the connections.  Output is a dot file encoding the cluster's connection state.
""")
@click.option("--file", "-f", "file", default="", help="sets an output dot-file for the connectivity graph")
@click.option("--all-ipfs-peers", is_flag=True,
              help="causes the graph to mark nodes for ipfs peers not directly in the cluster")
@pass_ctl
def health_graph(c: Ctl, file: str, all_ipfs_peers: bool) -> None:
    from pincluster.cli.dot import make_dot

    async def go(client: Client) -> None:
        text = make_dot(await client.health_graph(), all_ipfs_peers)
        if not file:
            c.write(text)
            return
        try:
            with open(file, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as err:
            fail("creating output file", err)

    c.run(go)


@health.command("metrics", usage="List latest metrics logged by this peer", args_usage="<metric name>",
                description="""
This commands displays the latest valid metrics of the given type logged
by this peer for all current cluster peers.

If no argument is provided, the command retrieves all currently existing metric types.

Currently supported metrics depend on the informer component used,
but usually are:

- freespace
- ping
""")
@click.argument("name", required=False, default="")
@pass_ctl
def health_metrics(c: Ctl, name: str) -> None:

    async def go(client: Client) -> None:
        if not name:
            c.emit(await client.metric_names(), format_metric_names)
            return
        metrics = await client.metrics(name)
        now = time.time_ns()
        c.emit(metrics, lambda ms: "".join(format_metric(m, now) for m in ms))

    c.run(go)


@health.command("alerts", usage="List the latest expired metric alerts", description="""
This command provides a list of "alerts" that the cluster has seen.

An alert is triggered when one of the metrics seen for a peer expires, and no
new metrics have been received.

Different alerts may be handled in different ways. i.e. ping alerts may
trigger automatic repinnings if configured.
""")
@pass_ctl
def health_alerts(c: Ctl) -> None:

    async def go(client: Client) -> None:
        alerts = await client.alerts()
        now = time.time_ns()
        c.emit(alerts, lambda xs: "".join(format_alert(a, now) for a in xs))

    c.run(go)


@health.command("bandwidth", usage="Lists bandwidth stats for libp2p protocols", description="""
This command lists information about bytes sent, received and current bandwidth
rates for each libp2p protocol that the peer uses.
""")
@pass_ctl
def health_bandwidth(c: Ctl) -> None:

    async def go(client: Client) -> None:
        c.emit(await client.bandwidth(), format_bandwidth)

    c.run(go)


@cli.group(usage="Manage IPFS daemon", description="Manage IPFS daemon")
def ipfs() -> None:
    pass


@ipfs.command("gc", usage="run garbage collection on IPFS repos of cluster peers", description="""
This command will instruct current Cluster peers to run "repo gc" on their
respective IPFS daemons.

When --local flag is passed, it will garbage collect only on the local IPFS
daemon, otherwise on all IPFS daemons.
""")
@_local_option
@pass_ctl
def ipfs_gc(c: Ctl, local: bool) -> None:

    async def go(client: Client) -> None:
        c.emit(await client.repo_gc(local=local), format_repo_gc)

    c.run(go)


# --- commands (the help command is urfave's own) ----------------------------------------------------------------
@cli.command("commands", usage="List all commands", args_usage=" ", hidden=True)
def commands() -> None:
    for line in command_paths(cli, PROGRAM):
        click.echo(line)


def main(args: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        rv = cli.main(args=list(args) if args is not None else None, prog_name=PROGRAM, standalone_mode=False)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.Abort:
        click.echo("error : context canceled", err=True)
        sys.exit(125)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
