"""RPC carries the caller's trace context (protocol 2.1): the called peer serves the call in a span of the
caller's trace; a peer that announced 2.0 gets the three-field header it reads."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pincluster.config.sections import TracingConfig
from pincluster.observe import tracing
from pincluster.p2p.host import Host
from pincluster.p2p.keys import PrivateKey
from pincluster.rpc import POLICIES, RPC, Policy, rpc_method
from pincluster.types.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(30)
PSK = os.urandom(32)
POL = {**POLICIES, "Test.Where": Policy.OPEN, "Test.Count": Policy.OPEN}


class Svc:
    """Reports the span it is served in: (trace id in hex, name, parent span id, parent is remote), or None."""

    @staticmethod
    def _here() -> tuple[str, str, int, bool] | None:
        from opentelemetry.trace import get_current_span

        sp: Any = get_current_span()
        sc = sp.get_span_context()
        if not sc.is_valid or not sp.is_recording():
            return None
        return f"{sc.trace_id:032x}", sp.name, sp.parent.span_id, sp.parent.is_remote

    @rpc_method("Where")
    async def where(self) -> tuple[str, str, int, bool] | None:
        return self._here()

    @rpc_method("Count")
    async def count(self, n: int) -> AsyncIterator[tuple[str, str, int, bool] | None]:
        for _ in range(n):
            yield self._here()


async def pair(callee_protocol: str) -> tuple[Host, Host, RPC]:
    ha = Host(PrivateKey.generate_ed25519(), PSK, "/pincluster/rpc/2.1", [Multiaddr("/ip4/127.0.0.1/tcp/0")])
    hb = Host(PrivateKey.generate_ed25519(), PSK, callee_protocol, [Multiaddr("/ip4/127.0.0.1/tcp/0")])
    await ha.start()
    await hb.start()
    a = RPC(ha, policies=POL)
    b = RPC(hb, policies=POL)
    b.register("Test", Svc())
    await ha.connect(hb.addrs[0])
    return ha, hb, a


@pytest.fixture
def traced(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a sink for the exported spans
    agent.bind(("127.0.0.1", 0))
    t = tracing.Tracing(TracingConfig(enable_tracing=True, sampling_prob=getattr(request, "param", 1.0),
                                      jaeger_agent_endpoint=Multiaddr(f"/ip4/127.0.0.1/udp/{agent.getsockname()[1]}")))
    t.start()
    yield None
    t.shutdown()
    agent.close()


async def test_a_call_is_served_in_the_callers_trace(traced: None) -> None:
    from opentelemetry.trace import get_current_span

    ha, hb, a = await pair("/pincluster/rpc/2.1")
    try:
        callee = hb.peer_id
        with tracing.span("caller"):
            trace_id = f"{get_current_span().get_span_context().trace_id:032x}"
            served = await a.call(callee, "Test.Where")
            streamed = [x async for x in a.stream(callee, "Test.Count", 2)]
        assert served is not None and streamed[0] is not None
        assert served[0] == trace_id and served[1] == "rpc/serve/Test.Where" and served[3]
        assert streamed[0][0] == trace_id and streamed[0][1] == "rpc/serve/Test.Count"
        # a call outside any trace starts no span on the callee (periodic calls would each make a trace)
        assert await a.call(callee, "Test.Where") is not None  # the caller's own rpc/ span is a trace
        assert [x async for x in a.stream(callee, "Test.Count", 1)] == [None]
    finally:
        await ha.close()
        await hb.close()


async def test_a_2_0_peer_gets_the_header_it_reads(traced: None) -> None:
    ha, hb, a = await pair("/pincluster/rpc/2.0")
    try:
        assert ha.is_connected(hb.peer_id)
        with tracing.span("caller"):
            assert await a.call(hb.peer_id, "Test.Where") is None  # no trace context was sent
    finally:
        await ha.close()
        await hb.close()


@pytest.mark.parametrize("traced", [0.0], indirect=True)
async def test_a_trace_the_caller_dropped_is_dropped_by_the_callee(traced: None) -> None:
    ha, hb, a = await pair("/pincluster/rpc/2.1")
    try:
        with tracing.span("caller"):
            header = tracing.context_header()
            assert header is not None and header.endswith("-00")  # carried, marked not sampled
            # the callee builds no span for it at all: the shared null context, as with no trace
            assert tracing.remote_span("rpc/serve/Test.Where", header) is tracing.remote_span("x", None)
            assert await a.call(hb.peer_id, "Test.Where") is None
    finally:
        await ha.close()
        await hb.close()


async def test_without_tracing_the_header_has_three_fields() -> None:
    from pincluster.rpc import core

    ha, hb, _a = await pair("/pincluster/rpc/2.1")
    try:
        st = await ha.new_stream(hb.peer_id, core.STREAM_NAME)
        assert st.remote_version == (2, 1)
        msg = core._request(st, "Test.Where", 5.0, False, None)
        (hlen,) = core._HDR_LEN.unpack_from(msg)
        import msgspec

        assert msgspec.msgpack.decode(msg[2:2 + hlen]) == ["Test.Where", 5.0, False]
        st.reset()
    finally:
        await ha.close()
        await hb.close()
