"""The fast JSON writers of listings (Pin, PinInfo, PinInfoShort, GlobalPinInfo) against the mirror path.

``to_json`` writes these types by hand for speed; ``_to_json_generic`` is the msgspec mirror path whose Go
byte-compatibility the other codec tests pin down. Here both must give the same bytes on generated objects
that cover every omitted/null/empty rule, escaping, time forms and peer-map ordering.
"""

from __future__ import annotations

import random
import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from pincluster.p2p.keys import PrivateKey
from pincluster.types.cid import CID, DAG_CBOR, RAW, sha256_multihash
from pincluster.types.codec import (
    _to_json_generic,
    from_json,
    from_msgpack,
    ndjson_batches,
    to_json,
    to_json_lines,
    to_msgpack,
)
from pincluster.types.gotime import ZERO_TIME, GoTime, format_time, from_unix_nano, parse_time, to_gotime
from pincluster.types.models import GlobalPinInfo, Pin, PinInfo, PinInfoShort
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import PinMode, PinType, TrackerStatus

_PEERS = [PrivateKey.generate_ed25519().public_key().peer_id() for _ in range(6)]
_RSA_PEER = PeerID.decode("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
_ADDRS = [
    Multiaddr("/ip4/127.0.0.1/tcp/4001"),
    Multiaddr(f"/ip4/10.0.0.1/tcp/4001/p2p/{_PEERS[0]}"),
    Multiaddr("/ip6/::1/udp/4001/quic-v1"),
    Multiaddr("/dns4/a<b>&c.example/tcp/443/wss"),
    Multiaddr('/unix/tmp/we"ird\\path'),
]
_NAMES = [
    "", "file.bin", "<script>&", "ünïcödé ☃", "line\nbreak\ttab", 'quo"te\\back', "sep\u2028\u2029", "\x00\x1f\x7f"
]


def _time(rnd: random.Random) -> datetime:
    kind = rnd.randrange(7)
    if kind == 0:
        return ZERO_TIME
    base = datetime(rnd.choice([1, 999, 1970, 2025, 9999]), rnd.randint(1, 12), rnd.randint(1, 28),
                    rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59),
                    rnd.choice([0, 1, 10, 120000, 100000, 123456, rnd.randrange(1_000_000)]), UTC)
    if kind == 1:
        return to_gotime(base, rnd.randint(1, 999))
    if kind == 2:
        offset = timezone(timedelta(hours=rnd.randint(-12, 12), minutes=rnd.choice([0, 30])))
        return base.replace(year=2025).astimezone(offset)  # (year 1 or 9999 would leave the range)
    if kind == 3:
        return datetime(1, 1, 1, tzinfo=timezone(timedelta(0), "GMT"))
    return base


def _peers(rnd: random.Random, none_ok: bool = True) -> tuple[PeerID, ...] | None:
    if none_ok and rnd.random() < 0.3:
        return None
    return tuple(rnd.sample([*_PEERS, _RSA_PEER], rnd.randint(0, 4)))


def _addrs(rnd: random.Random, none_ok: bool = True) -> tuple[Multiaddr, ...] | None:
    if none_ok and rnd.random() < 0.3:
        return None
    return tuple(rnd.sample(_ADDRS, rnd.randint(0, 3)))


def _meta(rnd: random.Random) -> dict[str, str] | None:
    r = rnd.random()
    if r < 0.3:
        return None
    if r < 0.4:
        return {}
    return {rnd.choice(_NAMES) or "k": rnd.choice(_NAMES) for _ in range(rnd.randint(1, 4))}


def _cid(rnd: random.Random) -> CID:
    mh = sha256_multihash(rnd.randbytes(8))
    return rnd.choice([CID(mh), CID.v1(RAW, mh), CID.v1(DAG_CBOR, mh)])


def _status(rnd: random.Random) -> TrackerStatus:
    if rnd.random() < 0.1:
        return TrackerStatus.PIN_ERROR | TrackerStatus.PINNING
    return rnd.choice(list(TrackerStatus))


def _short_kwargs(rnd: random.Random) -> dict[str, Any]:
    return {
        "peername": rnd.choice(_NAMES),
        "ipfs_peer_id": rnd.choice([None, *_PEERS]),
        "ipfs_peer_addresses": _addrs(rnd, none_ok=False),
        "status": _status(rnd),
        "timestamp": _time(rnd),
        "error": rnd.choice(["", "", "context deadline exceeded", "<bad> & \"worse\""]),
        "attempt_count": rnd.choice([0, 1, 7, 2**40]),
        "priority_pin": rnd.random() < 0.5,
    }


def _pininfo(rnd: random.Random, peer: PeerID | None = None) -> PinInfo:
    return PinInfo(
        cid=_cid(rnd),
        name=rnd.choice(_NAMES),
        peer=peer or rnd.choice(_PEERS),
        allocations=_peers(rnd),
        origins=_addrs(rnd),
        created=_time(rnd),
        metadata=_meta(rnd),
        **_short_kwargs(rnd),
    )


def _global(rnd: random.Random) -> GlobalPinInfo:
    top = _pininfo(rnd)
    peers = rnd.sample([*_PEERS, _RSA_PEER], rnd.randint(0, 5))
    return GlobalPinInfo._from_top(top, {p: PinInfoShort(**_short_kwargs(rnd)) for p in peers})


def _pin(rnd: random.Random) -> Pin:
    return Pin(
        replication_factor_min=rnd.choice([-1, 0, 2]),
        replication_factor_max=rnd.choice([-1, 0, 3]),
        name=rnd.choice(_NAMES),
        mode=rnd.choice(list(PinMode)),
        shard_size=rnd.choice([0, 1 << 20]),
        user_allocations=_peers(rnd),
        expire_at=_time(rnd),
        metadata=_meta(rnd),
        pin_update=rnd.choice([None, _cid(rnd)]),
        origins=_addrs(rnd),
        cid=_cid(rnd),
        type=rnd.choice(list(PinType)),
        allocations=_peers(rnd, none_ok=False) or (),
        max_depth=rnd.choice([-1, 0, 5]),
        reference=rnd.choice([None, _cid(rnd)]),
        timestamp=_time(rnd),
    )


@pytest.mark.parametrize("make", [_global, _pininfo, _pin, lambda r: PinInfoShort(**_short_kwargs(r))])
def test_fast_writer_matches_mirror_path(make: Any) -> None:
    rnd = random.Random(zlib.crc32(make.__name__.encode()))
    for _ in range(400):
        obj = make(rnd)
        assert to_json(obj) == _to_json_generic(obj), obj


def test_fast_writer_repeats_are_stable() -> None:
    """Cached fragments (peer texts, names, shared time objects) give the same bytes the second time."""
    rnd = random.Random(7)
    objs = [_global(rnd) for _ in range(50)]
    first = [to_json(o) for o in objs]
    assert [to_json(o) for o in objs] == first == [_to_json_generic(o) for o in objs]


def test_listing_shapes_byte_for_byte() -> None:
    """A merged status as the REST API streams it: Go's field order, omitted ipfs fields, sorted peer map."""
    a, b = sorted(_PEERS[:2], key=str)
    ts = parse_time("2025-01-02T03:04:05.12Z")
    info = PinInfo(cid=CID.decode("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"), peer=b, allocations=(),
                   created=ts, status=TrackerStatus.PINNED, timestamp=ts, peername="b")
    other = PinInfo(cid=info.cid, peer=a, status=TrackerStatus.REMOTE, timestamp=ZERO_TIME, peername="a<",
                    ipfs_peer_id=a, ipfs_peer_addresses=(_ADDRS[0],))
    g = GlobalPinInfo.from_pin_infos([info, other])
    expected = (
        '{"cid":"QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N","name":"","allocations":null,"origins":null,'
        '"created":"0001-01-01T00:00:00Z","metadata":null,"peer_map":{'
        f'"{a}":{{"peername":"a\\u003c","ipfs_peer_id":"{a}","ipfs_peer_addresses":["/ip4/127.0.0.1/tcp/4001"],'
        '"status":"remote","timestamp":"0001-01-01T00:00:00Z","error":"","attempt_count":0,"priority_pin":false},'
        f'"{b}":{{"peername":"b","status":"pinned","timestamp":"2025-01-02T03:04:05.12Z","error":"",'
        '"attempt_count":0,"priority_pin":false}}}'
    )
    assert to_json(g).decode() == expected
    assert from_json(to_json(g), GlobalPinInfo) == g


def test_gotime_nanoseconds_and_offsets_in_listings() -> None:
    t = from_unix_nano(1_700_000_000_123_456_789)
    assert isinstance(t, GoTime)
    info = PinInfo(cid=CID.decode("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"), peer=_PEERS[0], timestamp=t,
                   created=parse_time("2025-01-02T03:04:05+02:00"))
    out = to_json(info).decode()
    assert '"timestamp":"2023-11-14T22:13:20.123456789Z"' in out
    assert '"created":"2025-01-02T03:04:05+02:00"' in out
    assert format_time(t) == "2023-11-14T22:13:20.123456789Z"  # the identity cache gives the same text again


def test_to_json_lines_and_batches_match_to_json() -> None:
    rnd = random.Random(3)
    objs: list[Any] = [_global(rnd), _pininfo(rnd), _pin(rnd), {"not": "a model"}, [1, 2]]
    assert to_json_lines(objs) == b"".join(to_json(o) + b"\n" for o in objs)
    assert to_json_lines([]) == b""


async def test_ndjson_batches_use_the_fast_writers() -> None:
    rnd = random.Random(4)
    objs = [_global(rnd) for _ in range(300)]
    chunks = [c async for c in ndjson_batches(objs, max_bytes=4096)]
    assert len(chunks) > 1
    assert b"".join(chunks) == b"".join(_to_json_generic(o) + b"\n" for o in objs)


def test_msgpack_round_trip_shares_multiaddrs_and_peers() -> None:
    """Decoding caches parsed multiaddrs and peer IDs by value: equal objects, same JSON."""
    rnd = random.Random(5)
    infos = [_pininfo(rnd) for _ in range(50)]
    back = from_msgpack(to_msgpack(infos), list[PinInfo])
    assert [to_json(i) for i in back] == [_to_json_generic(i) for i in back]
    for a, b in zip(infos, back, strict=True):
        assert a.cid == b.cid and a.peer == b.peer and a.ipfs_peer_addresses == b.ipfs_peer_addresses
        assert a.origins == b.origins


def test_peer_text_is_cached_and_correct() -> None:
    p = PeerID(_PEERS[1].bytes)  # a fresh object: the text slot is filled on first use
    assert str(p) == str(_PEERS[1]) == str(p)
    assert PeerID.decode(str(p)) == p
    with pytest.raises(AttributeError):
        p._mh = b""  # type: ignore[misc]
