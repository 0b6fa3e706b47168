"""RPC between cluster peers over Host streams: unary and streaming calls, both ways.

One call = one multiplexed stream named ``rpc``. Request message: ``u16 header_len || header || arg``,
header = msgpack ``[method, timeout_s, streamed_args]``, plus the caller's W3C ``traceparent`` when it traces
and the callee speaks protocol 2.1 or later (older peers accept exactly three fields); with streamed args, each
further message is one msgpack item, then the caller half-closes. Reply messages: ``0x00 || msgpack(value)``
for a unary result, ``0x02 || msgpack([value, …])`` for a batch of stream results, or
``0x01 || msgpack([code, message])``; the
callee's clean end-of-stream ends a successful call. A streaming handler runs in its own task ahead of the
writer, and each message carries whatever items are ready (up to ``STREAM_BATCH_ITEMS`` or
``STREAM_BATCH_BYTES``): a fast stream (a status listing) costs one frame per hundreds of items, a slow one
still sends each item as soon as it exists. Flow control of the stream gives backpressure; a reset cancels the handler.
Calls to the local peer skip the network and serialization entirely.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import struct
import time
import typing
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from pincluster.errors import InvalidInput, PinclusterError, Timeout, Unavailable
from pincluster.observe import tracing
from pincluster.p2p.host import Host, Stream
from pincluster.rpc.errors import (
    MissingPolicy,
    RPCUnauthorized,
    UnknownMethod,
    error_code,
    error_from_code,
)
from pincluster.rpc.policy import POLICIES, Policy
from pincluster.types.codec import msgpack_decoder, msgpack_encoder
from pincluster.types.peer import PeerID

if TYPE_CHECKING:
    from pincluster.observe.hooks import RPCObserver

log = logging.getLogger("pincluster.rpc")

STREAM_NAME = "rpc"
_HDR_LEN = struct.Struct(">H")
_ITEM = b"\x00"
_ERROR = b"\x01"
_BATCH = b"\x02"
#: ``timeout=UNBOUNDED``: no deadline (listings of a whole pinset can take minutes). None means the default.
UNBOUNDED = 0.0
STREAM_BATCH_ITEMS = 512
STREAM_BATCH_BYTES = 48 * 1024

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def rpc_method(name: str | None = None) -> Callable[[F], F]:
    """Mark a service method as callable over RPC as ``<Service>.<name>`` (default: the function name)."""

    def mark(fn: F) -> F:
        fn.__rpc_name__ = name or fn.__name__  # type: ignore[attr-defined]
        return fn

    return mark


# ----- value encoding: the data model's one msgpack codec (any msgspec value, Structs, CIDs, peer IDs, times).
_encoder = msgpack_encoder()
#: Protocol version from which a peer accepts a trace context in request headers.
TRACE_CONTEXT_SINCE = (2, 1)


class _Header(msgspec.Struct, array_like=True, gc=False):
    """A request header; fields after ``streamed`` are optional, and fields a later version adds are ignored."""

    method: str
    timeout: float
    streamed: bool
    trace: str = ""  # W3C traceparent of the caller's span ("": none)


_hdr_decoder = msgspec.msgpack.Decoder(_Header)
_err_decoder = msgspec.msgpack.Decoder(tuple[str, str])
decoder_for = msgpack_decoder


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


@dataclass
class _Method:
    name: str
    fn: Callable[..., Any]
    policy: Policy
    arg_type: Any  # None: takes no argument
    args_streamed: bool
    out_stream: bool
    wants_caller: bool


def _describe(name: str, fn: Callable[..., Any], policy: Policy) -> _Method:
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != "caller"]
    wants_caller = "caller" in sig.parameters
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    arg_type: Any = None
    streamed = False
    if params:
        arg_type = hints.get(params[0].name, Any)
        origin = typing.get_origin(arg_type)
        if origin in (AsyncIterator, AsyncIterable):
            streamed = True
            (arg_type,) = typing.get_args(arg_type) or (Any,)
    return _Method(name, fn, policy, arg_type, streamed, inspect.isasyncgenfunction(fn), wants_caller)


async def _flatten(batches: AsyncGenerator[list[Any], None]) -> AsyncGenerator[Any, None]:
    """The items of a batched stream one by one; closing it closes the batches (which resets the stream)."""
    try:
        async for batch in batches:
            for item in batch:
                yield item
    finally:
        await batches.aclose()


class RPC:
    """Server and client of the peer RPC on one Host (or local-only when ``host`` is None)."""

    def __init__(
        self,
        host: Host | None,
        local_peer: PeerID | None = None,
        *,
        policies: Mapping[str, Policy] = POLICIES,
        default_timeout: float | None = 60.0,
    ) -> None:
        self.host = host
        if local_peer is None:
            if host is None:
                raise InvalidInput("RPC needs a host or a local peer ID")
            local_peer = host.peer_id
        self.local_peer = local_peer
        self.policies = dict(policies)
        self.default_timeout = default_timeout
        self._methods: dict[str, _Method] = {}
        self._trusted: Callable[[PeerID], bool] = lambda _p: False
        self.observer: RPCObserver | None = None  # metrics hook (pincluster.observe), set by the daemon
        if host is not None:
            host.set_stream_handler(STREAM_NAME, self._serve)

    # ----- server side
    def set_trusted(self, is_trusted: Callable[[PeerID], bool]) -> None:
        """The cluster decides who is trusted (Raft: every peer in the peerset)."""
        self._trusted = is_trusted

    def register(self, service: str, obj: object) -> list[str]:
        """Register every ``@rpc_method`` of ``obj`` as ``<service>.<name>``; each needs a policy."""
        names: list[str] = []
        for attr in dir(obj):
            if attr.startswith("__"):
                continue
            fn = getattr(obj, attr, None)
            rpc_name = getattr(fn, "__rpc_name__", None)
            if fn is None or rpc_name is None:
                continue
            full = f"{service}.{rpc_name}"
            self.add_method(full, fn)
            names.append(full)
        return names

    def add_method(self, name: str, fn: Callable[..., Any]) -> None:
        policy = self.policies.get(name)
        if policy is None:
            raise MissingPolicy(
                f"RPC method {name} has no access policy; add it to pincluster.rpc.policy.POLICIES"
            )
        if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            raise InvalidInput(f"RPC method {name} must be an async function or async generator")
        self._methods[name] = _describe(name, fn, policy)

    def methods(self) -> list[str]:
        return sorted(self._methods)

    def _allowed(self, m: _Method, caller: PeerID) -> bool:
        if caller == self.local_peer:
            return True
        if m.policy is Policy.OPEN:
            return True
        if m.policy is Policy.TRUSTED:
            return bool(self._trusted(caller))
        return False

    async def _serve(self, st: Stream) -> None:
        req = await st.read_msg()
        if req is None:
            return
        try:
            (hlen,) = _HDR_LEN.unpack_from(req)
            hdr = _hdr_decoder.decode(memoryview(req)[2 : 2 + hlen])
        except (struct.error, msgspec.DecodeError) as e:
            await self._send_error(st, InvalidInput(f"malformed RPC request: {e}"))
            return
        method, timeout, streamed = hdr.method, hdr.timeout, hdr.streamed
        m = self._methods.get(method)
        if m is None:
            self._served("unknown", False)
            await self._send_error(st, UnknownMethod(f"peer {self.local_peer} has no RPC method {method}"))
            return
        caller = st.remote_peer
        if not self._allowed(m, caller):
            self._served(method, False)
            await self._send_error(
                st,
                RPCUnauthorized(
                    f"{method} is {m.policy.value}: peer {caller} may not call it on {self.local_peer}"
                ),
            )
            return
        if streamed != m.args_streamed:
            kind = "a stream of arguments" if m.args_streamed else "a single argument"
            self._served(method, False)
            await self._send_error(st, InvalidInput(f"{method} takes {kind}"))
            return
        args: list[Any] = []
        if m.arg_type is not None:
            if m.args_streamed:
                args.append(self._arg_stream(st, m))
            else:
                try:
                    args.append(decoder_for(m.arg_type).decode(memoryview(req)[2 + hlen :]))
                except (msgspec.DecodeError, msgspec.ValidationError) as e:
                    self._served(method, False)
                    await self._send_error(st, InvalidInput(f"bad argument for {method}: {e}"))
                    return
        kwargs: dict[str, Any] = {"caller": caller} if m.wants_caller else {}
        inner = asyncio.get_running_loop().create_task(self._run(st, m, args, kwargs, timeout, hdr.trace))

        def _cancel(_e: BaseException) -> None:
            inner.cancel()

        st.on_reset(_cancel)
        try:
            self._served(method, await inner)
            if not st.remote_closed:
                st.reset()  # unread streamed arguments: free the stream instead of waiting for them
        except asyncio.CancelledError:
            if inner.cancelled() and st.is_reset:
                log.debug("%s from %s cancelled by the caller", method, caller)
                return
            inner.cancel()
            raise

    def _served(self, method: str, ok: bool) -> None:
        if self.observer is not None:
            self.observer.rpc_served(method, ok)

    async def _run(
        self, st: Stream, m: _Method, args: list[Any], kwargs: dict[str, Any], timeout: float, trace: str = ""
    ) -> bool:
        """Run the handler and send its answer or its error; True when it succeeded. A call that carries the
        caller's trace is served in a span of that trace."""
        try:
            with tracing.remote_span(lambda: "rpc/serve/" + m.name, trace, **{"rpc.caller": st.remote_peer}):
                async with asyncio.timeout(timeout if timeout > 0 else None):
                    if m.out_stream:
                        await _write_batched(st, m.fn(*args, **kwargs))
                    else:
                        res = await m.fn(*args, **kwargs)
                        await st.write_msg(_ITEM + _encoder.encode(res), close=True)
            return True
        except TimeoutError as e:
            if not isinstance(e, PinclusterError):
                e = Timeout(f"{m.name} on {self.local_peer} exceeded its {timeout:g} s deadline")
            await self._send_error(st, e)
        except (asyncio.CancelledError, Unavailable) as e:
            if st.is_reset:
                return False
            if isinstance(e, asyncio.CancelledError):
                raise
            await self._send_error(st, e)
        except Exception as e:
            if not isinstance(e, PinclusterError):
                log.exception("RPC %s failed", m.name)
            await self._send_error(st, e)
        return False

    async def _arg_stream(self, st: Stream, m: _Method) -> AsyncIterator[Any]:
        dec = decoder_for(m.arg_type)
        while True:
            msg = await st.read_msg()
            if msg is None:
                return
            try:
                yield dec.decode(msg)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise InvalidInput(f"bad streamed argument for {m.name}: {e}") from e

    async def _send_error(self, st: Stream, exc: BaseException) -> None:
        if st.is_reset:
            return
        with contextlib.suppress(PinclusterError, ConnectionError):
            await st.write_msg(_ERROR + _encoder.encode((error_code(exc), str(exc))), close=True)

    # ----- client side
    def _local(self, method: str) -> _Method:
        m = self._methods.get(method)
        if m is None:
            raise UnknownMethod(f"peer {self.local_peer} has no RPC method {method}")
        return m

    def _timeout(self, timeout: float | None) -> float | None:
        """None: the default deadline; ``UNBOUNDED`` (0) or less: none (as 0 means on the wire)."""
        t = self.default_timeout if timeout is None else timeout
        return None if t is not None and t <= 0 else t

    async def call(
        self,
        peer: PeerID | None,
        method: str,
        arg: Any = None,
        *,
        result_type: Any = Any,
        timeout: float | None = None,
    ) -> Any:
        """Call a unary method on ``peer`` (None or self = local fast path); raises the remote's typed error."""
        with tracing.span(lambda: "rpc/" + method, **{"rpc.peer": peer or self.local_peer}):
            obs = self.observer
            if obs is None:
                return await self._call(peer, method, arg, result_type=result_type, timeout=timeout)
            started, ok = time.perf_counter(), False
            try:
                res = await self._call(peer, method, arg, result_type=result_type, timeout=timeout)
                ok = True
                return res
            finally:
                obs.rpc_call(method, peer is not None and peer != self.local_peer, ok, time.perf_counter() - started)

    async def _call(
        self, peer: PeerID | None, method: str, arg: Any, *, result_type: Any, timeout: float | None
    ) -> Any:
        tmo = self._timeout(timeout)
        if peer is None or peer == self.local_peer:
            m = self._local(method)
            if m.out_stream:
                raise InvalidInput(f"{method} is a streaming method: use RPC.stream")
            args = [] if m.arg_type is None else [arg]
            kwargs = {"caller": self.local_peer} if m.wants_caller else {}
            try:
                async with asyncio.timeout(tmo):
                    return await m.fn(*args, **kwargs)
            except TimeoutError:
                raise Timeout(f"{method} on the local peer timed out after {tmo:g} s") from None
        st: Stream | None = None
        try:
            async with asyncio.timeout(tmo):
                st = await self._open(peer)
                await st.write_msg(_request(st, method, tmo, False, arg), close=True)
                msg = await st.read_msg()
                if msg is None:
                    raise Unavailable(f"{method} on {peer}: the peer closed the stream without an answer")
                return _decode_reply(msg, result_type, method, peer)
        except TimeoutError:
            if st is not None:
                st.reset()
            raise Timeout(f"{method} on {peer} timed out after {tmo:g} s") from None
        except asyncio.CancelledError:
            if st is not None:
                st.reset()
            raise

    async def _open(self, peer: PeerID) -> Stream:
        if self.host is None:
            raise Unavailable(f"cannot call {peer}: this RPC instance is local-only")
        return await self.host.new_stream(peer, STREAM_NAME)

    def stream(
        self,
        peer: PeerID | None,
        method: str,
        arg: Any = None,
        *,
        args: AsyncIterable[Any] | Iterable[Any] | None = None,
        result_type: Any = Any,
        timeout: float | None = None,
    ) -> AsyncGenerator[Any, None]:
        """Call a streaming method; yields results as they come, with backpressure.

        ``args`` streams the arguments (for methods taking an ``AsyncIterator``). ``timeout`` bounds the
        whole call. Leaving the loop early resets the stream, which cancels the remote handler.
        """
        return _flatten(self.stream_batches(peer, method, arg, args=args, result_type=result_type, timeout=timeout))

    async def _observed(self, gen: AsyncGenerator[Any, None], method: str, remote: bool) -> AsyncGenerator[Any, None]:
        """``gen`` counted and timed for the metrics; a consumer that stops early is not an error."""
        started, ok = time.perf_counter(), False
        try:
            async for item in gen:
                yield item
            ok = True
        except GeneratorExit:
            ok = True
            raise
        finally:
            await gen.aclose()
            if self.observer is not None:
                self.observer.rpc_call(method, remote, ok, time.perf_counter() - started)

    def stream_batches(
        self,
        peer: PeerID | None,
        method: str,
        arg: Any = None,
        *,
        args: AsyncIterable[Any] | Iterable[Any] | None = None,
        result_type: Any = Any,
        timeout: float | None = None,
    ) -> AsyncGenerator[list[Any], None]:
        """As :meth:`stream`, but yields the results in the lists they arrived in (one per message), which
        spares a consumer of long listings one suspension per item. Local results come one per list."""
        gen = self._stream_batches(peer, method, arg, args=args, result_type=result_type, timeout=timeout)
        if self.observer is None:
            return gen
        return self._observed(gen, method, peer is not None and peer != self.local_peer)

    async def _stream_batches(
        self,
        peer: PeerID | None,
        method: str,
        arg: Any,
        *,
        args: AsyncIterable[Any] | Iterable[Any] | None,
        result_type: Any,
        timeout: float | None,
    ) -> AsyncGenerator[list[Any], None]:
        tmo = self._timeout(timeout)
        deadline = None if tmo is None else time.monotonic() + tmo
        if peer is None or peer == self.local_peer:
            async for item in self._local_stream(method, arg, args, deadline):
                yield [item]
            return
        dec = decoder_for(result_type)
        batch_dec = decoder_for(list[result_type])  # type: ignore[valid-type]
        st = await self._bounded(self._open(peer), deadline, method, peer)
        pump: asyncio.Task[None] | None = None
        done = False
        try:
            if args is not None:
                await st.write_msg(_request(st, method, tmo, True, arg))
                pump = asyncio.get_running_loop().create_task(_pump_args(st, args))
            else:
                await st.write_msg(_request(st, method, tmo, False, arg), close=True)
            while True:
                msg = await self._bounded(st.read_msg(), deadline, method, peer)
                if msg is None:
                    done = True
                    return
                tag = msg[:1]
                if tag in (_BATCH, _ITEM):
                    try:
                        items = (batch_dec if tag == _BATCH else dec).decode(memoryview(msg)[1:])
                    except (msgspec.DecodeError, msgspec.ValidationError) as e:
                        raise InvalidInput(f"{method} from {peer}: bad item: {e}") from e
                    yield items if tag == _BATCH else [items]
                else:
                    done = True
                    raise _decode_error(msg, method, peer)
        finally:
            if pump is not None and not pump.done():
                pump.cancel()
                done = False  # arguments still flowing: the stream is not finished, reset it
            if not done:
                st.reset()

    async def _bounded(
        self, aw: Awaitable[T], deadline: float | None, method: str, peer: PeerID
    ) -> T:
        if deadline is None:
            return await aw
        try:
            return await asyncio.wait_for(aw, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise Timeout(f"{method} on {peer} timed out") from None

    async def _local_stream(
        self,
        method: str,
        arg: Any,
        args: AsyncIterable[Any] | Iterable[Any] | None,
        deadline: float | None,
    ) -> AsyncIterator[Any]:
        m = self._local(method)
        call_args: list[Any] = []
        if m.arg_type is not None:
            call_args.append(_aiter(args) if m.args_streamed and args is not None else arg)
        kwargs = {"caller": self.local_peer} if m.wants_caller else {}
        if not m.out_stream:
            async with asyncio.timeout_at(_loop_deadline(deadline)):
                yield await m.fn(*call_args, **kwargs)
            return
        agen = m.fn(*call_args, **kwargs)
        try:
            while True:
                try:
                    if deadline is None:
                        item = await agen.__anext__()
                    else:
                        item = await asyncio.wait_for(agen.__anext__(), max(0.0, deadline - time.monotonic()))
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise Timeout(f"{method} on the local peer timed out") from None
                yield item
        finally:
            await agen.aclose()

    async def call_many(
        self,
        peers: Sequence[PeerID],
        method: str,
        arg: Any = None,
        *,
        args: Sequence[Any] | None = None,
        result_type: Any = Any,
        timeout: float | None = None,
    ) -> list[Any]:
        """Call ``method`` on every peer at once; item i is peer i's result or its PinclusterError.

        ``args`` gives one argument per peer (else ``arg`` for all). Unauthorized answers come back as
        RPCUnauthorized, which broadcasts may skip (spec §13.2).
        """
        if args is not None and len(args) != len(peers):
            raise InvalidInput(f"call_many: {len(args)} arguments for {len(peers)} peers")

        async def one(i: int, p: PeerID) -> Any:
            try:
                return await self.call(
                    p, method, args[i] if args is not None else arg, result_type=result_type, timeout=timeout
                )
            except PinclusterError as e:
                return e

        return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(peers))))


async def _write_batched(st: Stream, agen: AsyncGenerator[Any, None]) -> None:
    """Send a streaming handler's items, as many per message as are ready (see the module docstring).

    The handler runs in a producer task that encodes items into a buffer of at most about two messages'
    worth of bytes (so memory stays bounded and the stream's backpressure reaches the handler); the writer
    sends whatever the buffer holds as one ``0x02`` message.
    """
    buf: deque[bytes] = deque()
    held = 0
    ended = False
    space = asyncio.Event()
    data = asyncio.Event()

    async def produce() -> None:
        nonlocal held, ended
        try:
            async for item in agen:
                raw = _encoder.encode(item)
                while held >= 2 * STREAM_BATCH_BYTES:
                    space.clear()
                    await space.wait()
                buf.append(raw)
                held += len(raw)
                data.set()
        finally:
            await agen.aclose()
        ended = True
        data.set()

    producer = asyncio.get_running_loop().create_task(produce())
    try:
        while True:
            if not buf:
                if ended:
                    break
                if producer.done():
                    producer.result()  # the handler failed: raise its error
                    break
                data.clear()
                waiter = asyncio.ensure_future(data.wait())
                await asyncio.wait({waiter, producer}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                continue
            parts: list[bytes] = []
            size = 0
            while buf and len(parts) < STREAM_BATCH_ITEMS and (not parts or size + len(buf[0]) <= STREAM_BATCH_BYTES):
                raw = buf.popleft()
                parts.append(raw)
                size += len(raw)
            held -= size
            space.set()
            await st.write_msg(_BATCH + b"\xdc" + struct.pack(">H", len(parts)) + b"".join(parts))
        await producer  # raises the handler's error, if any
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer


def _loop_deadline(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return asyncio.get_running_loop().time() + max(0.0, deadline - time.monotonic())


def _request(st: Stream, method: str, timeout: float | None, streamed: bool, arg: Any) -> bytes:
    """The request message for a call on ``st``: with the caller's trace context when it traces and the called
    peer reads one (``TRACE_CONTEXT_SINCE``)."""
    fields: tuple[Any, ...] = (method, float(timeout or 0.0), streamed)
    if st.remote_version >= TRACE_CONTEXT_SINCE and (trace := tracing.context_header()):
        fields += (trace,)
    hdr = _encoder.encode(fields)
    body = b"" if streamed else _encoder.encode(arg)
    return _HDR_LEN.pack(len(hdr)) + hdr + body


def _decode_reply(msg: bytes, result_type: Any, method: str, peer: PeerID) -> Any:
    if msg[:1] == _ITEM:
        try:
            return decoder_for(result_type).decode(memoryview(msg)[1:])
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise InvalidInput(f"{method} from {peer}: bad reply: {e}") from e
    raise _decode_error(msg, method, peer)


def _decode_error(msg: bytes, method: str, peer: PeerID) -> PinclusterError:
    try:
        code, text = _err_decoder.decode(memoryview(msg)[1:])
    except (msgspec.DecodeError, msgspec.ValidationError):
        code, text = "internal", "unreadable error reply"
    return error_from_code(code, f"{method} on {peer}: {text}")


async def _pump_args(st: Stream, args: AsyncIterable[Any] | Iterable[Any]) -> None:
    try:
        async for a in _aiter(args):
            await st.write_msg(_encoder.encode(a))
        await st.close()
    except PinclusterError as e:
        log.debug("argument stream ended: %s", e)
        st.reset()


async def _aiter(it: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
    if isinstance(it, AsyncIterable):
        async for x in it:
            yield x
    else:
        for x in it:
            yield x
