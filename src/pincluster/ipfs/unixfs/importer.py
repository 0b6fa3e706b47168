"""The UnixFS importer: files and directories in, kubo-identical DAGs and ``ipfs add`` events out.

It is a library: the node's ``/api/v0/add`` and the cluster's own ``/add`` both call :func:`import_entries`
with a stream of :class:`ImportEntry` and a block sink. The work runs in a producer task that feeds a bounded
queue, so progress events can be yielded from deep inside a layout while the consumer reads them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pincluster.errors import InvalidInput
from pincluster.ipfs.dagpb import PBLink, encode_node
from pincluster.ipfs.unixfs.chunker import ChunkerSpec, chunk_stream
from pincluster.ipfs.unixfs.hamt import HAMT_THRESHOLD, build_hamt, estimated_size
from pincluster.ipfs.unixfs.layout import (
    BlockSink,
    BlockWriter,
    CidFormat,
    DagNode,
    FileDagBuilder,
    LeafSource,
    balanced_layout,
    trickle_layout,
)
from pincluster.ipfs.unixfs.pb import DIRECTORY_DATA, DataType
from pincluster.types.cid import CID, DAG_PB, HASH_CODES, IDENTITY, SHA2_256

__all__ = ["AddEvent", "AddOptions", "BlockSink", "ImportEntry", "import_bytes", "import_entries"]

log = logging.getLogger("pincluster.ipfs")

_TRUE = {"true", "1", "yes", "on", ""}
_FALSE = {"false", "0", "no", "off"}


def _parse_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise InvalidInput(f"option {name!r}: {value!r} is not a boolean (use true or false)")


@dataclass(frozen=True)
class AddOptions:
    """``ipfs add`` options, with kubo's defaults and names (see :meth:`from_kubo_args`)."""

    cid_version: int = 0
    raw_leaves: bool | None = None  # None → True iff cid_version == 1
    chunker: str = "size-262144"
    trickle: bool = False
    hash: str = "sha2-256"
    only_hash: bool = False
    wrap_with_directory: bool = False
    hidden: bool = False
    pin: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise InvalidInput(f"cid-version {self.cid_version} is not supported; use 0 or 1")
        code = HASH_CODES.get(self.hash)
        if code is None or code == IDENTITY:
            names = ", ".join(sorted(k for k in HASH_CODES if k != "identity"))
            raise InvalidInput(f"unrecognized hash function {self.hash!r}; use one of {names}")
        if code != SHA2_256 and self.cid_version == 0:
            raise InvalidInput("CIDv0 only supports sha2-256; add with --cid-version=1 to use another hash")
        ChunkerSpec.parse(self.chunker)  # validate early

    @property
    def effective_raw_leaves(self) -> bool:
        return self.raw_leaves if self.raw_leaves is not None else self.cid_version == 1

    @property
    def cid_format(self) -> CidFormat:
        return CidFormat(self.cid_version, HASH_CODES[self.hash], self.effective_raw_leaves)

    @classmethod
    def from_kubo_args(cls, args: Mapping[str, str]) -> AddOptions:
        """Build options from kubo query arguments (``cid-version``, ``raw-leaves``, ``chunker``, ``trickle``,
        ``hash``, ``only-hash``, ``wrap-with-directory``, ``hidden``, ``pin``, ``progress``; short forms
        ``n``, ``w``, ``H``, ``t``, ``s``, ``p``, ``q`` too). Booleans in any case. A hash other than sha2-256
        without an explicit ``cid-version`` selects CIDv1, as kubo does. Unknown keys are ignored."""
        alias = {"n": "only-hash", "w": "wrap-with-directory", "H": "hidden", "t": "trickle", "s": "chunker",
                 "p": "progress"}
        a: dict[str, str] = {}
        for k, v in args.items():
            a[alias.get(k, k)] = v
        for unsupported in ("inline", "nocopy", "fscache", "preserve-mode", "preserve-mtime"):
            if unsupported in a and _parse_bool(unsupported, a[unsupported]):
                raise InvalidInput(f"option {unsupported!r} is not supported by this node")
        kw: dict[str, object] = {}
        bools = {"raw-leaves": "raw_leaves", "trickle": "trickle", "only-hash": "only_hash",
                 "wrap-with-directory": "wrap_with_directory", "hidden": "hidden", "pin": "pin",
                 "progress": "progress"}
        for key, attr in bools.items():
            if key in a:
                kw[attr] = _parse_bool(key, a[key])
        if "chunker" in a and a["chunker"].strip():
            kw["chunker"] = a["chunker"].strip()
        if "hash" in a and a["hash"].strip():
            kw["hash"] = a["hash"].strip()
        if "cid-version" in a and a["cid-version"].strip():
            try:
                kw["cid_version"] = int(a["cid-version"].strip())
            except ValueError:
                raise InvalidInput(f"cid-version {a['cid-version']!r} is not an integer") from None
        elif kw.get("hash", "sha2-256") != "sha2-256":
            kw["cid_version"] = 1
        return cls(**kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ImportEntry:
    """One input file or directory. ``path`` is relative and '/'-separated ('dir/a.txt')."""

    path: str
    kind: Literal["file", "dir"]
    chunks: AsyncIterator[bytes] | None = None


@dataclass(frozen=True)
class AddEvent:
    """One line of ``ipfs add`` output: a finished file/dir (cid set) or progress (cid None, bytes so far)."""

    name: str
    cid: CID | None
    size: int
    bytes: int


@dataclass
class _Dir:
    children: dict[str, _Dir | DagNode] = field(default_factory=dict)


def _split_path(path: str) -> list[str]:
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    for p in parts:
        if p == "..":
            raise InvalidInput(f"invalid path {path!r}: '..' is not allowed")
    return parts


async def _import_file(
    chunks: AsyncIterator[bytes] | None,
    opts: AddOptions,
    chunker: ChunkerSpec,
    writer: BlockWriter,
    on_bytes: AsyncProgress | None,
) -> DagNode:
    fmt = opts.cid_format

    async def _empty() -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover

    source = chunks if chunks is not None else _empty()
    leaf_type = DataType.RAW if opts.trickle else DataType.FILE
    src = LeafSource(
        chunk_stream(source, chunker), fmt, writer, leaf_type,
        on_bytes=on_bytes.report if on_bytes is not None else None,
    )
    builder = FileDagBuilder(fmt, writer)
    try:
        if opts.trickle:
            return await trickle_layout(src, builder)
        return await balanced_layout(src, builder)
    finally:
        src.cancel()


class AsyncProgress:
    """Turns byte counts from the leaf source into progress events on the output queue."""

    def __init__(self, queue: asyncio.Queue[AddEvent | BaseException | None], name: str) -> None:
        self._queue = queue
        self._name = name
        self.last = -1

    def report(self, n: int) -> None:
        if n != self.last:
            self.last = n
            self._queue.put_nowait(AddEvent(self._name, None, 0, n))


async def _build_dir(
    d: _Dir, fmt: CidFormat, writer: BlockWriter, path: str, out: list[tuple[str, DagNode]]
) -> DagNode:
    """Post-order, sorted: children's directory events come before their parent's, as kubo prints them.

    Above kubo's size threshold the directory becomes a HAMT shard, exactly as kubo shards it.
    """
    entries: list[tuple[str, DagNode]] = []
    for name in sorted(d.children, key=lambda s: s.encode("utf-8")):
        child = d.children[name]
        child_path = f"{path}/{name}" if path else name
        node = await _build_dir(child, fmt, writer, child_path, out) if isinstance(child, _Dir) else child
        entries.append((name, node))
    if estimated_size(entries) > HAMT_THRESHOLD:
        node = await build_hamt(entries, fmt, writer)
        out.append((path, node))
        return node
    links = [PBLink(n.cid, name, n.tsize) for name, n in entries]
    block = encode_node(links, DIRECTORY_DATA)
    cid = fmt.cid_for(DAG_PB, block)
    await writer.add(cid, block)
    node = DagNode(cid, len(block) + sum(n.tsize for _name, n in entries), 0)
    out.append((path, node))
    return node


async def _run_import(
    entries: AsyncIterable[ImportEntry],
    sink: BlockSink | None,
    opts: AddOptions,
    queue: asyncio.Queue[AddEvent | BaseException | None],
    space: asyncio.Semaphore,
) -> None:
    chunker = ChunkerSpec.parse(opts.chunker)
    writer = BlockWriter(None if opts.only_hash else sink)
    root = _Dir()
    top_level: list[str] = []

    async def emit(ev: AddEvent) -> None:
        await space.acquire()
        queue.put_nowait(ev)

    try:
        async for entry in entries:
            parts = _split_path(entry.path)
            if not opts.hidden and any(p.startswith(".") for p in parts[1:]):
                continue
            if not parts and entry.kind == "dir":
                continue
            parent = root
            for p in parts[:-1]:
                nxt = parent.children.get(p)
                if nxt is None:
                    nxt = parent.children[p] = _Dir()
                    if parent is root:
                        top_level.append(p)
                if not isinstance(nxt, _Dir):
                    raise InvalidInput(f"{entry.path!r}: {p!r} is a file, not a directory")
                parent = nxt
            name = parts[-1] if parts else ""
            if entry.kind == "dir":
                existing = parent.children.get(name)
                if existing is None:
                    parent.children[name] = _Dir()
                    if parent is root:
                        top_level.append(name)
                elif not isinstance(existing, _Dir):
                    raise InvalidInput(f"{entry.path!r} is given both as a file and as a directory")
                continue
            if entry.kind != "file":
                raise InvalidInput(f"{entry.path!r}: unknown entry kind {entry.kind!r}")
            if name in parent.children:
                raise InvalidInput(f"{entry.path!r} is given twice")
            display = "/".join(parts)
            progress = AsyncProgress(queue, display) if opts.progress else None
            node = await _import_file(entry.chunks, opts, chunker, writer, progress)
            if name == "":
                if opts.wrap_with_directory:
                    raise InvalidInput("a file without a name cannot be wrapped in a directory")
                name = str(node.cid)
                display = name
            parent.children[name] = node
            if parent is root:
                top_level.append(name)
            await emit(AddEvent(display, node.cid, node.tsize, 0))
        fmt = opts.cid_format
        dir_events: list[tuple[str, DagNode]] = []
        if opts.wrap_with_directory:
            await _build_dir(root, fmt, writer, "", dir_events)
        else:
            for name in sorted(top_level, key=lambda s: s.encode("utf-8")):
                child = root.children[name]
                if isinstance(child, _Dir):
                    root.children[name] = await _build_dir(child, fmt, writer, name, dir_events)
        await writer.close()  # every block durable before the last event: callers pin after this
        for path, node in dir_events:
            await emit(AddEvent(path, node.cid, node.tsize, 0))
        queue.put_nowait(None)
    except BaseException as exc:
        writer.abort()
        queue.put_nowait(exc)
        if not isinstance(exc, Exception):
            raise


async def import_entries(
    entries: AsyncIterable[ImportEntry], sink: BlockSink | None, opts: AddOptions
) -> AsyncIterator[AddEvent]:
    """Import ``entries`` and yield ``ipfs add`` events in kubo's order.

    Progress events (``cid`` None, ``bytes`` so far) come first for each file when ``opts.progress``; then
    one event per file as it finishes, then one per directory (children before parents, sorted). With
    ``wrap_with_directory`` the last event is the wrapping directory, named ``""``. Blocks go to ``sink``
    (none when ``opts.only_hash`` or ``sink`` is None); when the generator finishes, every block is stored.
    """
    queue: asyncio.Queue[AddEvent | BaseException | None] = asyncio.Queue()
    space = asyncio.Semaphore(256)  # bounds finished-entry events held for a slow consumer
    task = asyncio.create_task(_run_import(entries, sink, opts, queue, space))
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            if item.cid is not None:
                space.release()
            yield item
        await task
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except BaseException:
                pass


async def import_bytes(data: bytes, opts: AddOptions | None = None, sink: BlockSink | None = None,
                       name: str = "") -> CID:
    """Convenience for tests and small adds: the root CID of ``data`` imported as one file."""

    async def one() -> AsyncIterator[bytes]:
        yield data

    async def entries() -> AsyncIterator[ImportEntry]:
        yield ImportEntry(name, "file", one())

    last: CID | None = None
    async for ev in import_entries(entries(), sink, opts or AddOptions()):
        if ev.cid is not None:
            last = ev.cid
    assert last is not None
    return last
