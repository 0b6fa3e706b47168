"""JSON shapes of spec §2 (byte for byte), msgpack and state round trips, JSON value streams (§11)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pincluster.errors import InvalidInput, StateError
from pincluster.types.cid import CID
from pincluster.types.codec import (
    DecodeError,
    aiter_json_values,
    from_json,
    from_msgpack,
    iter_json_values,
    ndjson_batches,
    ndjson_lines,
    pin_from_state,
    pin_to_state,
    stored_pin_modes,
    to_json,
    to_json_pretty,
    to_msgpack,
)
from pincluster.types.gotime import ZERO_TIME, parse_time
from pincluster.types.models import (
    ID,
    IPFSID,
    AddedOutput,
    Alert,
    ConnectGraph,
    Error,
    GlobalPinInfo,
    GlobalRepoGC,
    IPFSPinInfo,
    IPFSRepoGC,
    IPFSRepoStat,
    Metric,
    Pin,
    PingValue,
    PinInfo,
    PinInfoShort,
    PinOptions,
    RepoGC,
    Version,
)
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import IPFSPinStatus, PinMode, PinType, TrackerStatus

C1 = "QmbrCtydGyPeHiLURSPMqrvE5mCgMCwFYq3UD4XLCeAYw6"
C2 = "bafybeigixivp4gzwhmk3k7vimnseuvceykhyqk3bnypkzlakvhk6aivi6u"
PA = "12D3KooWJVWB6YoRGbGzixpYmwnmkRSK4N4tMGx9ZLeoQSipjitv"
PB = "12D3KooWK8aZZwDqxB239587LNHFpWp7X7V9u1n7LpYqrNj947ec"
PQ = "QmNz3DmoRcuUo7eDjcq9sex2WqJgY9F3NeGf3xU7rSAEkJ"
TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "ipfs-cluster-state-export.json"


def roundtrip(text: str, typ: type[Any]) -> Any:
    """Decode ``text`` as ``typ``, check that encoding gives the same bytes back, return the object."""
    obj = from_json(text.encode(), typ)
    assert to_json(obj).decode() == text
    assert from_msgpack(to_msgpack(obj), typ) == obj  # same instants (msgpack carries times as UTC)
    return obj


# --- spec §2 examples --------------------------------------------------------------------------------------
def test_pin_rest_example_byte_exact() -> None:
    text = (
        '{"replication_factor_min":-1,"replication_factor_max":-1,"name":"","mode":"recursive","shard_size":0,'
        '"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":{},"pin_update":null,'
        f'"origins":null,"cid":"{C1}","type":"pin","allocations":[],"max_depth":-1,"reference":null,'
        '"timestamp":"2025-01-01T12:00:00.123456789Z"}'
    )
    pin = Pin(
        cid=CID.decode(C1),
        replication_factor_min=-1,
        replication_factor_max=-1,
        metadata={},
        timestamp=parse_time("2025-01-01T12:00:00.123456789Z"),
    )
    assert to_json(pin).decode() == text  # nanoseconds are written exactly
    decoded = roundtrip(text, Pin)  # and read back exactly (Go truncates, never rounds)
    assert decoded.cid == pin.cid and decoded.metadata == {} and decoded.origins is None
    assert decoded.timestamp == datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    roundtrip(text.replace(".123456789Z", ".123456Z"), Pin)
    assert from_json(text.replace(".123456789Z", ".9999999Z"), Pin).timestamp.second == 0  # not rounded up


def test_pin_export_line_byte_exact() -> None:
    text = (
        '{"replication_factor_min":-1,"replication_factor_max":-1,"name":"","mode":"recursive","shard_size":0,'
        '"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,"pin_update":null,'
        f'"origins":[],"cid":"{C1}","type":"pin","allocations":[],"max_depth":-1,"reference":null,'
        '"timestamp":"2025-01-01T12:00:00Z"}'
    )
    pin = roundtrip(text, Pin)
    # what the state store gives back prints the same line
    assert to_json(pin_from_state(pin_to_state(pin))).decode() == text


def test_pin_with_everything_byte_exact() -> None:
    text = (
        '{"replication_factor_min":2,"replication_factor_max":3,"name":"a\\u003cb\\u003e \\u0026 c",'
        f'"mode":"direct","shard_size":104857600,"user_allocations":["{PA}"],'
        '"expire_at":"2030-01-01T00:00:00+02:00","metadata":{"a":"1","z":"2"},'
        f'"pin_update":"{C2}","origins":["/ip4/1.2.3.4/tcp/4001/p2p/{PA}"],"cid":"{C2}","type":"shard-pin",'
        f'"allocations":["{PB}","{PQ}"],"max_depth":0,"reference":"{C1}","timestamp":"2025-06-01T01:02:03.5-07:00"}}'
    )
    pin = roundtrip(text, Pin)
    assert pin.name == "a<b> & c" and pin.type is PinType.SHARD and pin.mode is PinMode.DIRECT
    assert pin.timestamp.utcoffset() == timedelta(hours=-7)


def test_id_example_byte_exact() -> None:
    text = (
        f'{{"id":"{PA}","addresses":["/ip4/127.0.0.1/tcp/9096/p2p/{PA}"],"cluster_peers":["{PA}"],'
        '"cluster_peers_addresses":[],"version":"1.1.6","commit":"","rpc_protocol_version":"/ipfscluster/1.0/rpc",'
        f'"error":"","ipfs":{{"id":"{PB}","addresses":["/ip4/127.0.0.1/tcp/4001/p2p/{PB}"],"error":""}},'
        '"peername":"myhost"}'
    )
    ident = roundtrip(text, ID)
    assert ident.ipfs.id == PeerID.decode(PB)
    down = ID(id=PeerID.decode(PA), ipfs=IPFSID(error="dial tcp: connection refused"))
    assert b'"ipfs":{"addresses":null,"error":"dial tcp: connection refused"}' in to_json(down)
    roundtrip('{"addresses":null,"error":"down"}', IPFSID)


def test_global_pin_info_byte_exact() -> None:
    text = (
        f'{{"cid":"{C1}","name":"n","allocations":[],"origins":[],"created":"2025-01-01T12:00:00Z",'
        f'"metadata":null,"peer_map":{{"{PA}":{{"peername":"a","ipfs_peer_id":"{PB}",'
        f'"ipfs_peer_addresses":["/ip4/8.8.8.8/tcp/4001"],"status":"pinned","timestamp":"2025-01-01T12:00:01Z",'
        f'"error":"","attempt_count":0,"priority_pin":false}},"{PB}":{{"peername":"b","status":"cluster_error",'
        '"timestamp":"0001-01-01T00:00:00Z","error":"peer down","attempt_count":3,"priority_pin":true},'
        f'"{PQ}":{{"peername":"q","status":"pin_queued","timestamp":"2025-01-01T12:00:02.25Z",'
        '"error":"","attempt_count":0,"priority_pin":false}}}'
    )
    g = roundtrip(text, GlobalPinInfo)
    assert g.peer_map[PeerID.decode(PB)].status == TrackerStatus.CLUSTER_ERROR
    assert g.peer_map[PeerID.decode(PB)].ipfs_peer_id is None
    assert g.peer_map[PeerID.decode(PQ)].status == TrackerStatus.PIN_QUEUED
    # peer_map keys are written sorted whatever the insertion order
    rebuilt = GlobalPinInfo(
        cid=g.cid,
        name=g.name,
        allocations=g.allocations,
        origins=g.origins,
        created=g.created,
        metadata=None,
        peer_map=dict(reversed(list(g.peer_map.items()))),
    )
    assert to_json(rebuilt).decode() == text
    lst = [g, g]
    assert from_json(to_json(lst), list[GlobalPinInfo]) == lst


def test_pin_info_and_short() -> None:
    info = PinInfo(
        cid=CID.decode(C1),
        peer=PeerID.decode(PA),
        status=TrackerStatus.UNEXPECTEDLY_UNPINNED,
        error="the item should be pinned but it is not",
        timestamp=datetime(2025, 1, 1, tzinfo=UTC),
    )
    text = to_json(info).decode()
    assert text == (
        f'{{"cid":"{C1}","name":"","peer":"{PA}","allocations":null,"origins":null,'
        '"created":"0001-01-01T00:00:00Z","metadata":null,"peername":"","status":"unexpectedly_unpinned",'
        '"timestamp":"2025-01-01T00:00:00Z","error":"the item should be pinned but it is not",'
        '"attempt_count":0,"priority_pin":false}'
    )
    assert from_json(text, PinInfo) == info
    assert from_msgpack(to_msgpack(info), PinInfo) == info
    short = info.short
    assert from_json(to_json(short), PinInfoShort) == short
    assert from_json(b"{}", PinInfoShort) == PinInfoShort()


def test_added_output_omissions() -> None:
    roundtrip(f'{{"name":"smallfile.bin","cid":"{C1}","size":511,"allocations":["{PA}"]}}', AddedOutput)
    roundtrip('{"name":"big.bin","cid":null,"bytes":262144}', AddedOutput)
    assert to_json(AddedOutput()) == b'{"name":"","cid":null}'


def test_metric_alert_and_ping_value() -> None:
    ping = PingValue(peer_name="p", ipfs_id=PeerID.decode(PB))
    value = to_json(ping).decode()
    assert value == f'{{"peer_name":"p","ipfs_id":"{PB}"}}'
    assert to_json(PingValue()) == b"{}"
    metric_text = (
        f'{{"name":"ping","peer":"{PA}","value":{to_json(value).decode()},"expire":1735732800123456789,'
        '"valid":true,"weight":0,"partitionable":false,"received_at":1735732790000000000}'
    )
    m = roundtrip(metric_text, Metric)
    assert from_json(m.value, PingValue) == ping
    alert_text = metric_text[:-1] + ',"triggered_at":"2025-01-01T12:00:00.5Z"}'
    a = roundtrip(alert_text, Alert)
    assert a.metric == m


def test_connect_graph_and_repo_gc() -> None:
    graph = (
        f'{{"cluster_id":"{PA}","id_to_peername":{{"{PA}":"a","{PB}":"b"}},"ipfs_links":{{"{PQ}":[]}},'
        f'"cluster_links":{{"{PA}":["{PB}"],"{PB}":[]}},"cluster_trust_links":{{"{PA}":true,"{PB}":false}},'
        f'"cluster_to_ipfs":{{"{PA}":"{PQ}"}}}}'
    )
    g = roundtrip(graph, ConnectGraph)
    assert g.cluster_links is not None and g.cluster_links[PeerID.decode(PA)] == (PeerID.decode(PB),)
    roundtrip(f'{{"key":"{C1}"}}', IPFSRepoGC)
    roundtrip('{"key":null,"error":"gc failed"}', IPFSRepoGC)
    repo = f'{{"peer":"{PA}","peername":"a","keys":[{{"key":"{C1}"}}]}}'
    roundtrip(repo, RepoGC)
    roundtrip(f'{{"peer_map":{{"{PA}":{repo}}}}}', GlobalRepoGC)
    roundtrip(f'{{"peer":"{PA}","peername":"a","keys":null,"error":"down"}}', RepoGC)


def test_small_shapes() -> None:
    roundtrip('{"version":"1.1.6"}', Version)
    roundtrip('{"code":404,"message":"pin is not part of the pinset"}', Error)
    roundtrip(f'{{"Cid":"{C1}","Type":"recursive"}}', IPFSPinInfo)
    roundtrip(f'{{"Cid":"{C1}","Type":""}}', IPFSPinInfo)
    kubo = from_json(f'{{"Cid":"{C1}","Type":"indirect through {C2}"}}', IPFSPinInfo)
    assert kubo.type is IPFSPinStatus.INDIRECT
    roundtrip('{"RepoSize":123,"StorageMax":10000000000}', IPFSRepoStat)
    opts = '{"replication_factor_min":0,"replication_factor_max":0,"name":"","mode":"recursive","shard_size":0,'
    opts += '"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,"pin_update":null,'
    opts += '"origins":null}'
    assert to_json(PinOptions()).decode() == opts


def test_go_escaping_of_html_and_line_separators() -> None:
    e = Error(code=1, message="<a href='x'>&\u2028\u2029é\n")
    assert to_json(e) == b'{"code":1,"message":"\\u003ca href=\'x\'\\u003e\\u0026\\u2028\\u2029\xc3\xa9\\n"}'
    assert from_json(to_json(e), Error) == e


def test_lists_dicts_and_times_at_top_level() -> None:
    pins = [Pin(cid=CID.decode(C1), timestamp=datetime(2025, 1, 1, tzinfo=UTC))]
    assert to_json(pins).startswith(b'[{"replication_factor_min":0')
    assert from_json(to_json(pins), list[Pin]) == pins
    assert to_json(datetime(2025, 1, 1, 0, 0, 0, 100000, tzinfo=UTC)) == b'"2025-01-01T00:00:00.1Z"'
    assert to_json({PeerID.decode(PA): "x"}) == f'{{"{PA}":"x"}}'.encode()


def test_pretty_output_like_marshal_indent() -> None:
    out = to_json_pretty(Error(code=1, message="a<b")).decode()
    assert out == '{\n    "code": 1,\n    "message": "a\\u003cb"\n}'


# --- lenient decoding ---------------------------------------------------------------------------------------
def test_missing_fields_take_defaults_and_unknown_are_ignored() -> None:
    pin = from_json(f'{{"cid":"{C1}","extra":{{"x":1}}}}', Pin)
    assert pin.type is PinType.DATA and pin.max_depth == -1 and pin.mode is PinMode.RECURSIVE
    assert pin.allocations == () and pin.timestamp == ZERO_TIME
    direct = from_json(f'{{"cid":"{C1}","mode":"direct"}}', Pin)
    assert direct.max_depth == 0
    stored = from_json(f'{{"cid":"{C1}","mode":"recursive","max_depth":0}}', Pin)
    assert stored.mode is PinMode.DIRECT  # mode derived from max_depth
    old = from_json(f'{{"cid":{{"/":"{C1}"}}}}', Pin)  # pre-1.0 CID form
    assert str(old.cid) == C1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"cid":"nope"}', "$.cid"),
        ("{}", "cid"),
        (f'{{"cid":"{C1}","allocations":["x"]}}', "$.allocations[0]"),
        (f'{{"cid":"{C1}","timestamp":"2025-01-01T00:00:00"}}', "$.timestamp"),
        (f'{{"cid":"{C1}","type":"weird"}}', "$.type"),
        (f'{{"cid":"{C1}","replication_factor_min":"1"}}', "$.replication_factor_min"),
        (f'{{"cid":"{C1}"', "truncated"),
        ("[]", "object"),
    ],
)
def test_bad_json_raises_decode_error_naming_the_field(text: str, fragment: str) -> None:
    with pytest.raises(DecodeError) as exc:
        from_json(text, Pin)
    assert isinstance(exc.value, InvalidInput)
    assert fragment in str(exc.value)


# --- msgpack ------------------------------------------------------------------------------------------------
def test_msgpack_round_trips() -> None:
    tz = timezone(timedelta(hours=2))
    pin = Pin(
        cid=CID.decode(C2),
        name="x",
        allocations=(PeerID.decode(PA), PeerID.decode(PQ)),
        metadata={"k": "v"},
        origins=(Multiaddr(f"/dns4/example.com/tcp/4001/p2p/{PA}"),),
        reference=CID.decode(C1),
        timestamp=datetime(2025, 1, 1, 12, 0, 0, 5, tzinfo=tz),
    )
    back = from_msgpack(to_msgpack(pin), Pin)
    assert back == pin  # same instant; msgpack carries UTC
    assert back.timestamp.utcoffset() == timedelta(0)
    assert len(to_msgpack(pin)) < len(to_json(pin))
    status = PinInfoShort(status=TrackerStatus.PIN_ERROR | TrackerStatus.PINNED)
    assert from_msgpack(to_msgpack(status), PinInfoShort).status == TrackerStatus.PIN_ERROR | TrackerStatus.PINNED
    with pytest.raises(DecodeError):
        from_msgpack(b"\x81\xa3cid\xc4\x02xx", Pin)


# --- state form ---------------------------------------------------------------------------------------------
def test_state_round_trip_and_size() -> None:
    ts = datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    simple = Pin(cid=CID.decode(C1), replication_factor_min=-1, replication_factor_max=-1, timestamp=ts)
    raw = pin_to_state(simple)
    assert len(raw) <= 56
    back = pin_from_state(raw)
    assert back == simple.replace(origins=())  # stored pins show origins as []
    assert back.metadata is None and back.user_allocations is None and back.timestamp == ts
    full = Pin(
        cid=CID.decode(C2),
        replication_factor_min=1,
        replication_factor_max=2,
        name="n",
        mode=PinMode.DIRECT,
        shard_size=7,
        user_allocations=(PeerID.decode(PB),),
        expire_at=datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        metadata={"a": "b"},
        pin_update=CID.decode(C1),
        origins=(Multiaddr(f"/ip4/1.2.3.4/tcp/1/p2p/{PA}"),),
        type=PinType.SHARD,
        allocations=(PeerID.decode(PA), PeerID.decode(PQ)),
        max_depth=1,
        reference=CID.decode(C1),
        timestamp=ts,
    )
    back = pin_from_state(pin_to_state(full))
    assert back == full.replace(user_allocations=None)  # user allocations are request-time only
    assert back.mode is PinMode.RECURSIVE and back.max_depth == 1
    assert back.expire_at.utcoffset() == timedelta(0)  # stored as UTC instants
    for t in PinType:
        assert pin_from_state(pin_to_state(simple.replace(type=t))).type is t


def test_state_refuses_other_formats_and_corruption() -> None:
    raw = pin_to_state(Pin(cid=CID.decode(C1)))
    assert raw[1] == 1  # format tag right after the array header
    with pytest.raises(StateError, match="format 2"):
        pin_from_state(raw[:1] + b"\x02" + raw[2:])
    with pytest.raises(DecodeError):
        pin_from_state(raw[:-3])
    with pytest.raises(DecodeError):
        pin_from_state(b"\x94\x01\xc4\x02ab\x02\xff")  # 2-byte "CID"
    with pytest.raises(DecodeError, match="pin type"):
        pin_from_state(raw[:38] + b"\x03" + raw[39:])  # header, format, 36 bytes of CID, type


# --- streams ------------------------------------------------------------------------------------------------
def test_state_import_sample_decodes_as_a_pin() -> None:
    data = TESTDATA.read_bytes()
    pins = list(iter_json_values([data], Pin))
    assert len(pins) == 1
    pin = pins[0]
    assert str(pin.cid) == "QmbrCtydGyPeHiLURSPMqrvE5mCgMCwFYq3UD4XLCeAYw6"
    assert (pin.replication_factor_min, pin.replication_factor_max) == (-1, -1)
    assert pin.allocations == ()
    assert pin.type is PinType.DATA and pin.max_depth == -1  # a recursive data pin (Go: direct, bad-type)


def test_json_stream_formats_and_chunking() -> None:
    pins = [Pin(cid=CID.decode(c), name=f"p{i}") for i, c in enumerate([C1, C2, C1])]
    ndjson = b"".join(ndjson_lines(pins))
    assert ndjson.count(b"\n") == 3
    pretty = b"\n".join(to_json_pretty(p) for p in pins) + b"\n\n"
    glued = b"".join(to_json(p) for p in pins)  # values back to back on one line
    mixed = ndjson + pretty + glued + b"  " + TESTDATA.read_bytes()
    for data in (ndjson, pretty, glued):
        assert list(iter_json_values([data], Pin)) == pins
    got = list(iter_json_values([mixed], Pin))
    assert got[:9] == pins * 3 and len(got) == 10
    # arbitrary chunk boundaries
    chunks = [mixed[i : i + 7] for i in range(0, len(mixed), 7)]
    assert list(iter_json_values(chunks, Pin)) == got
    assert list(iter_json_values([b"", b"\n  \n"], Pin)) == []
    assert list(iter_json_values([b'1 2\n"x"\n[3]'])) == [1, 2, "x", [3]]


def test_json_stream_errors() -> None:
    good = to_json(Pin(cid=CID.decode(C1))) + b"\n"
    with pytest.raises(DecodeError, match="starting at byte"):
        list(iter_json_values([good + b'{"cid": "bad"}\n' + good], Pin))
    with pytest.raises(DecodeError):
        list(iter_json_values([good + b'{"cid": "' + C1.encode()], Pin))  # truncated at EOF
    with pytest.raises(DecodeError):
        list(iter_json_values([good + b"{,}\n"], Pin))


def test_async_stream_helpers() -> None:
    pins = [Pin(cid=CID.decode(C1), name=str(i)) for i in range(50)]
    data = b"".join(ndjson_lines(pins))

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100):
            yield data[i : i + 100]

    async def source() -> AsyncIterator[Pin]:
        for p in pins:
            yield p

    async def run() -> None:
        got = [p async for p in aiter_json_values(chunks(), Pin)]
        assert got == pins
        batches = [b async for b in ndjson_batches(source(), max_bytes=2000)]
        assert len(batches) > 1 and all(b.endswith(b"\n") for b in batches)
        assert b"".join(batches) == data
        assert b"".join([b async for b in ndjson_batches(pins)]) == data

    asyncio.run(run())


def test_json_stream_long_line_of_values_in_chunks() -> None:
    pins = [Pin(cid=CID.decode(C1), name=f"pin-{i}") for i in range(4000)]
    line = b"".join(to_json(p) for p in pins)  # about 1.7 MB on one line, no newline at all
    assert len(line) > 1024 * 1024
    chunks = [line[i : i + 65536] for i in range(0, len(line), 65536)]
    got = list(iter_json_values(chunks, Pin))
    assert got == pins
    with pytest.raises(DecodeError, match="starting at byte"):
        list(iter_json_values([line[:-1]], Pin))  # the last value is cut short


def test_nanosecond_times_survive_every_shape_with_times() -> None:
    ns = "2025-01-01T12:00:00.000000001+01:00"
    info = f'{{"peername":"a","status":"pinned","timestamp":"{ns}","error":"","attempt_count":0,"priority_pin":false}}'
    roundtrip(info, PinInfoShort)
    g = from_json(f'{{"cid":"{C1}","created":"{ns}","peer_map":{{"{PA}":{info}}}}}', GlobalPinInfo)
    assert f'"created":"{ns}"'.encode() in to_json(g) and f'"timestamp":"{ns}"'.encode() in to_json(g)
    alert = from_json(f'{{"name":"ping","triggered_at":"{ns}"}}', Alert)
    assert f'"triggered_at":"{ns}"'.encode() in to_json(alert)
    opts = from_json(f'{{"expire_at":"{ns}"}}', PinOptions)
    assert f'"expire_at":"{ns}"'.encode() in to_json(opts)
    pins = from_json(f'[{{"cid":"{C1}","timestamp":"{ns}"}}]', list[Pin])
    assert f'"timestamp":"{ns}"'.encode() in to_json(pins)
    stored = pin_from_state(pin_to_state(pins[0]))  # the state keeps microseconds, in UTC
    assert stored.timestamp == datetime(2025, 1, 1, 11, 0, tzinfo=UTC) and type(stored.timestamp) is datetime
    assert from_msgpack(to_msgpack(pins[0]), Pin).timestamp == stored.timestamp
    streamed = list(iter_json_values([f'{{"cid":"{C1}","timestamp":"{ns}"}}\n'.encode()], Pin))
    assert f'"timestamp":"{ns}"'.encode() in to_json(streamed[0])
    with pytest.raises(DecodeError, match="timestamp"):
        from_json(f'{{"cid":"{C1}","timestamp":"2025-01-01T12:00:00.0000000001"}}', Pin)  # no zone


def test_nanosecond_time_inside_a_line_of_values() -> None:
    ns = "2025-01-01T12:00:00.000000007Z"
    plain = to_json(Pin(cid=CID.decode(C1)))
    fine = f'{{"cid":"{C2}","timestamp":"{ns}"}}'.encode()
    got = list(iter_json_values([plain + fine + plain + b"\n" + fine], Pin))
    assert [str(p.cid) for p in got] == [C1, C2, C1, C2]
    assert all(f'"timestamp":"{ns}"'.encode() in to_json(p) for p in (got[1], got[3]))


def test_times_and_statuses_a_listing_repeats_decode_to_their_own_values() -> None:
    """A listing's statuses share their peer's time (nanoseconds: the exact twins) and a few status names, and
    each distinct text is parsed once: every item still gets the value of its own text."""
    times = ["2025-01-01T12:00:00.000000001Z", "2025-01-01T12:00:00.000000002Z", "2025-01-01T13:00:00.5+01:00"]
    lines = []
    for i in range(12):
        t, st = times[i % 3], ("pinned", "remote", "pin_error,pinning")[i % 3]
        info = f'{{"peername":"a","status":"{st}","timestamp":"{t}"}}'
        lines.append(f'{{"cid":"{C1}","created":"{times[(i + 1) % 3]}","peer_map":{{"{PA}":{info}}}}}')
    for i, line in enumerate(lines):
        g = from_json(line, GlobalPinInfo)
        (short,) = g.peer_map.values()
        assert short.timestamp == parse_time(times[i % 3]) and g.created == parse_time(times[(i + 1) % 3])
        assert getattr(short.timestamp, "nanosecond", 0) == getattr(parse_time(times[i % 3]), "nanosecond", 0)
        assert short.status == TrackerStatus.from_string(("pinned", "remote", "pin_error,pinning")[i % 3])
        assert f'"timestamp":"{times[i % 3]}"'.encode() in to_json(g)


async def test_stored_pin_modes_are_what_the_pins_give() -> None:
    """The proxy's ``pin/ls`` reads (CID, mode) from the stored pins' leading fields: the same as from whole
    Pins (``pin_mode_pages``), metadata pins left out, a depth other than 0 recursive."""
    from pincluster.api.common.stream import pin_mode_pages

    v1 = CID.decode("bafkreidgvpkjawlxz6sffxzwgooowe5yt7i6wsyg236mfoks77nywkptdq")
    pins = [
        Pin(cid=CID.decode(C1)),
        Pin(cid=v1, mode=PinMode.DIRECT),
        Pin(cid=CID.decode(C2), type=PinType.META, reference=v1),
        Pin(cid=CID.decode(C2), type=PinType.SHARD, max_depth=1),
        Pin(cid=v1, type=PinType.CLUSTER_DAG, max_depth=0),
    ]

    async def source() -> AsyncIterator[Pin]:
        for p in pins:
            yield p

    expected = [x async for page in pin_mode_pages(source(), per_page=2) for x in page]
    assert stored_pin_modes([(p.cid.bytes, pin_to_state(p)) for p in pins]) == expected
    assert [m.value for _, m in expected] == ["recursive", "direct", "recursive", "direct"]
