"""The bandwidth counter behind ``GET /health/bandwidth``: go-flow-metrics' rates, the JSON Go writes, and the
bytes a peer connection really moves."""

from __future__ import annotations

import asyncio
import math
import os

import pytest

from pincluster.observe.bandwidth import ALPHA, BandwidthCounter
from pincluster.p2p.host import Host, Stream
from pincluster.p2p.keys import PrivateKey
from pincluster.testing import FakeClock
from pincluster.types.codec import from_json, go_float_json, to_json, to_json_pretty
from pincluster.types.models import Bandwidth
from pincluster.types.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(30)


def test_rates_follow_go_flow_metrics() -> None:
    clock = FakeClock()
    bw = BandwidthCounter(clock=clock)
    rpc = bw.meter("/pincluster/rpc/2.1")
    assert bw.meter("/pincluster/rpc/2.1") is rpc
    bw.meter("/quiet/1.0")  # made, never used: not listed (a protocol shows once it moved a byte)
    assert bw.by_protocol() == {}

    rpc.bytes_out += 3000
    rpc.bytes_in += 1000
    clock._set(2.0)  # two seconds since the counter was made: the first sample is taken as it is
    bw.sample()
    assert bw.by_protocol() == {"/pincluster/rpc/2.1": Bandwidth(total_in=1000, total_out=3000, rate_in=500.0,
                                                                 rate_out=1500.0)}
    clock._set(2.05)  # closer than a tenth of the interval: skipped, as go-flow-metrics skips it
    rpc.bytes_in += 10_000
    bw.sample()
    assert bw.meter("/pincluster/rpc/2.1").rate_in == 500.0
    clock._set(3.05)  # the bytes above count in the next sample: 10,000 over 1.05 s
    bw.sample()
    assert rpc.rate_in == pytest.approx(500 + ALPHA * (10_000 / 1.05 - 500))
    assert rpc.rate_out == pytest.approx(1500 * math.exp(-1.0))  # nothing sent: e⁻¹ of the rate is left
    for i in range(60):  # idle: the rate decays towards 0 and is 0 once below go-flow-metrics' idle rate
        clock._set(4.05 + i)
        bw.sample()
    assert rpc.rate_out == 0.0 and rpc.rate_in == 0.0
    assert bw.by_protocol()["/pincluster/rpc/2.1"].total_in == 11_000  # totals never decay


async def test_the_sampler_runs_every_interval() -> None:
    clock = FakeClock()
    bw = BandwidthCounter(clock=clock, interval=1.0)
    m = bw.meter("/x/1.0")
    task = asyncio.create_task(bw.run())
    try:
        for _ in range(3):
            m.bytes_in += 100
            await clock.advance(1.0)
        assert m.rate_in == pytest.approx(100.0)
    finally:
        task.cancel()


def test_totals_and_unknown_names() -> None:
    clock = FakeClock()
    bw = BandwidthCounter(clock=clock)
    bw.meter("/a").bytes_in += 10
    bw.meter("/b").bytes_in += 5
    bw.meter("/b").bytes_out += 7
    bw.peer_meter("12D3KooWpeer").bytes_out += 7
    clock._set(1.0)
    bw.sample()
    assert bw.totals() == Bandwidth(total_in=15, total_out=7, rate_in=15.0, rate_out=7.0)
    assert bw.for_peer("12D3KooWpeer") == Bandwidth(total_out=7, rate_out=7.0)
    assert bw.for_protocol("/none") == bw.for_peer("nobody") == Bandwidth()  # zeros, as libp2p's counter
    assert "/none" not in bw.by_protocol()


def test_bandwidth_json_is_what_go_writes() -> None:
    # Go 1.x encoding/json of the same values (api.Bandwidth, map keys sorted), by a Go program
    bw = {"/b": Bandwidth(total_in=3, rate_in=2.5), "/a": Bandwidth()}
    assert to_json(bw) == (b'{"/a":{"total_in":0,"total_out":0,"rate_in":0,"rate_out":0},'
                           b'"/b":{"total_in":3,"total_out":0,"rate_in":2.5,"rate_out":0}}')
    assert from_json(to_json(bw), dict[str, Bandwidth]) == bw
    assert from_json(b"null", dict[str, Bandwidth] | None) is None
    assert to_json_pretty({"/b": bw["/b"]}).decode() == (
        '{\n    "/b": {\n        "total_in": 3,\n        "total_out": 0,\n        "rate_in": 2.5,\n'
        '        "rate_out": 0\n    }\n}')


@pytest.mark.parametrize(("x", "go"), [
    # json.Marshal(float64) in Go, by a Go program
    (0.0, "0"), (-0.0, "-0"), (5.0, "5"), (1234.5678, "1234.5678"), (1e-7, "1e-7"), (1.5e-7, "1.5e-7"),
    (1e-6, "0.000001"), (1e-5, "0.00001"), (1e16, "10000000000000000"), (1e20, "100000000000000000000"),
    (1e21, "1e+21"), (1.5e21, "1.5e+21"), (1e-100, "1e-100"), (123456789.123, "123456789.123"), (0.1, "0.1"),
    (2 / 3, "0.6666666666666666"), (367.87944117144235, "367.87944117144235"), (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"), (12345678912345678.0, "12345678912345678"),
])
def test_go_float_json(x: float, go: str) -> None:
    assert go_float_json(x) == go


def test_go_float_json_refuses_what_json_cannot_hold() -> None:
    for x in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError, match="JSON has no"):
            go_float_json(x)


async def _echo(st: Stream) -> None:
    while (m := await st.read_msg()) is not None:
        await st.write_msg(m)


async def test_a_connection_counts_what_crosses_it_on_both_ends() -> None:
    """What one end counts as sent, the other counts as received, byte for byte (frames, length prefixes and
    encryption tags: what the socket carries after the handshake)."""
    psk = os.urandom(32)
    counters = (BandwidthCounter(), BandwidthCounter())
    a, b = (Host(PrivateKey.generate_ed25519(), psk, "/pincluster/test/1.0", [Multiaddr("/ip4/127.0.0.1/tcp/0")],
                 bandwidth=c) for c in counters)
    await a.start()
    await b.start()
    b.set_stream_handler("echo", _echo)
    try:
        await a.connect(b.addrs[0])
        st = await a.new_stream(b.peer_id, "echo")
        payload = os.urandom(100_000)
        await st.write_msg(payload)
        assert await st.read_msg() == payload
        await st.close()
        assert await st.read_msg() is None
        await asyncio.sleep(0.1)  # the last window update and FIN frames land
        ma, mb = (c.meter("/pincluster/test/1.0") for c in counters)
        assert ma.bytes_out >= len(payload) and mb.bytes_out >= len(payload)
        assert (ma.bytes_out, ma.bytes_in) == (mb.bytes_in, mb.bytes_out)
        assert list(counters[0].by_protocol()) == ["/pincluster/test/1.0"]
        # the same bytes again under the remote peer; the totals are every protocol's
        assert counters[0].for_peer(str(b.peer_id)) == counters[0].for_protocol("/pincluster/test/1.0")
        assert counters[1].for_peer(str(a.peer_id)).total_in == mb.bytes_in
        assert counters[0].totals() == counters[0].for_protocol("/pincluster/test/1.0")
    finally:
        await a.close()
        await b.close()
