"""Pin semantics of the data model: replication rules, query options, mode/max_depth, status merging."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest

from pincluster.errors import InvalidInput
from pincluster.types.cid import CID
from pincluster.types.gotime import ZERO_TIME, is_zero_time
from pincluster.types.models import (
    Alert,
    GlobalPinInfo,
    InvalidReplication,
    Metric,
    Pin,
    PinInfo,
    PinOptions,
    resolve_replication,
    validate_replication,
)
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import PinMode, PinType, TrackerStatus

CID1 = CID.decode("QmbrCtydGyPeHiLURSPMqrvE5mCgMCwFYq3UD4XLCeAYw6")
CID2 = CID.decode("bafybeigixivp4gzwhmk3k7vimnseuvceykhyqk3bnypkzlakvhk6aivi6u")
P1 = PeerID.decode("12D3KooWJVWB6YoRGbGzixpYmwnmkRSK4N4tMGx9ZLeoQSipjitv")
P2 = PeerID.decode("12D3KooWK8aZZwDqxB239587LNHFpWp7X7V9u1n7LpYqrNj947ec")
P3 = PeerID.decode("QmNz3DmoRcuUo7eDjcq9sex2WqJgY9F3NeGf3xU7rSAEkJ")
ORIGIN = f"/ip4/1.2.3.4/tcp/4001/p2p/{P1}"


# --- replication (§3.5) --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rmin", "rmax", "message"),
    [
        (0, 3, "cluster.replication_factor_min and max must be set"),
        (2, 0, "cluster.replication_factor_min and max must be set"),
        (3, 2, "cluster.replication_factor_min is larger than max"),
        (-2, 3, "cluster.replication_factor_min is wrong"),
        (-2, -2, "cluster.replication_factor_min is wrong"),
        (-1, 2, "cluster.replication_factor_min and max must be -1 when one of them is"),
        (2, -1, "cluster.replication_factor_min is larger than max"),
    ],
)
def test_replication_errors_have_go_texts(rmin: int, rmax: int, message: str) -> None:
    with pytest.raises(InvalidReplication) as exc:
        validate_replication(rmin, rmax)
    assert str(exc.value) == message
    assert isinstance(exc.value, InvalidInput)


@pytest.mark.parametrize(("rmin", "rmax"), [(-1, -1), (1, 1), (1, 3), (2, 2)])
def test_valid_replication(rmin: int, rmax: int) -> None:
    validate_replication(rmin, rmax)


def test_replication_defaults() -> None:
    assert resolve_replication(0, 0, -1, -1) == (-1, -1)
    assert resolve_replication(2, 0, 1, 3) == (2, 3)
    assert resolve_replication(0, 5, 1, 3) == (1, 5)
    with pytest.raises(InvalidReplication, match="larger than max"):
        resolve_replication(4, 0, 1, 3)
    pin = Pin(cid=CID1, allocations=(P1,))
    everywhere = pin.with_replication_defaults(-1, -1)
    assert (everywhere.replication_factor_min, everywhere.replication_factor_max) == (-1, -1)
    assert everywhere.allocations == ()  # pin everywhere clears preset allocations
    kept = Pin(cid=CID1, allocations=(P1,), replication_factor_min=1).with_replication_defaults(2, 3)
    assert kept.allocations == (P1,) and kept.replication_factor_min == 1 and kept.replication_factor_max == 3


# --- query parameters (§1.9a) -------------------------------------------------------------------------------
def test_from_query_full() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    q = {
        "name": "my pin",
        "mode": "direct",
        "replication-min": "2",
        "replication-max": "3",
        "shard-size": "1048576",
        "user-allocations": f"{P1},not-a-peer,{P2}",
        "expire-in": "1h30m",
        "meta-owner": "alice",
        "meta-": "ignored",
        "meta-a=b": "c",
        "pin-update": str(CID2),
        "origins": ORIGIN,
        "unrelated": "x",
    }
    opts = PinOptions.from_query(q, now=now)
    assert opts.name == "my pin"
    assert opts.mode is PinMode.DIRECT
    assert (opts.replication_factor_min, opts.replication_factor_max) == (2, 3)
    assert opts.shard_size == 1048576
    assert opts.user_allocations == (P1, P2)  # undecodable entries dropped silently
    assert opts.expire_at == now + timedelta(hours=1, minutes=30)
    assert opts.metadata == {"owner": "alice", "a=b": "c"}
    assert opts.pin_update == CID2
    assert opts.origins == (Multiaddr(ORIGIN),)


def test_from_query_defaults_and_overrides() -> None:
    opts = PinOptions.from_query({})
    assert opts == PinOptions(metadata={})  # the parser always creates the metadata map
    assert opts.mode is PinMode.RECURSIVE and opts.user_allocations is None and opts.origins is None
    assert is_zero_time(opts.expire_at)
    both = PinOptions.from_query({"replication": "4", "replication-min": "1", "replication-max": "9"})
    assert (both.replication_factor_min, both.replication_factor_max) == (4, 4)
    assert PinOptions.from_query({"mode": "weird"}).mode is PinMode.RECURSIVE
    at = PinOptions.from_query({"expire-at": "2030-01-02T03:04:05Z", "expire-in": "1h"})
    assert at.expire_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)  # expire-at wins


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"replication-min": "x"}, "parameter replication-min invalid"),
        ({"replication-max": "1.5"}, "parameter replication-max invalid"),
        ({"replication": " 2"}, "parameter replication-min invalid"),
        ({"shard-size": "-1"}, "parameter shard_size is invalid"),
        ({"shard-size": "18446744073709551616"}, "parameter shard_size is invalid"),
        ({"expire-at": "tomorrow"}, "expire-at cannot be parsed"),
        ({"expire-in": "soon"}, "expire-in cannot be parsed"),
        ({"expire-in": "500ms"}, "expire-in duration too short"),
        ({"pin-update": "nope"}, "error decoding update option parameter"),
        ({"origins": "/ip4/1.2.3.4/tcp/1"}, "multiaddress does not contain peer ID"),
        ({"origins": "garbage"}, "error decoding multiaddress"),
    ],
)
def test_from_query_errors(query: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        PinOptions.from_query(query)
    assert str(exc.value).startswith(message)


def test_to_query_like_go_client() -> None:
    opts = PinOptions(
        replication_factor_min=1,
        replication_factor_max=2,
        name="a b&c",
        mode=PinMode.DIRECT,
        user_allocations=(P1, P2),
        expire_at=datetime(2030, 1, 1, tzinfo=UTC),
        metadata={"z": "1", "a": "2"},
        pin_update=CID1,
        origins=(Multiaddr(ORIGIN),),
    )
    text = opts.to_query()
    keys = [k for k, _ in urllib.parse.parse_qsl(text, keep_blank_values=True)]
    assert keys == sorted(keys)
    assert "name=a+b%26c" in text
    back = PinOptions.from_query(dict(urllib.parse.parse_qsl(text, keep_blank_values=True)))
    assert back == opts
    minimal = PinOptions().to_query()
    assert minimal == "mode=recursive&name=&replication-max=0&replication-min=0&shard-size=0&user-allocations="


# --- pins --------------------------------------------------------------------------------------------------
def test_mode_and_max_depth_stay_consistent() -> None:
    assert Pin(cid=CID1).max_depth == -1
    assert Pin(cid=CID1, mode=PinMode.DIRECT).max_depth == 0
    assert Pin(cid=CID1, max_depth=0).mode is PinMode.DIRECT
    assert Pin(cid=CID1, max_depth=1, mode=PinMode.DIRECT).mode is PinMode.RECURSIVE  # depth wins
    assert Pin(cid=CID1, max_depth=-1, mode=PinMode.DIRECT).mode is PinMode.RECURSIVE
    pin = Pin(cid=CID1).replace(mode=PinMode.DIRECT)
    assert pin.max_depth == 0
    assert Pin(cid=CID1).type is PinType.DATA


def test_with_options_and_options_round_trip() -> None:
    opts = PinOptions(name="n", mode=PinMode.DIRECT, replication_factor_min=1, replication_factor_max=1)
    ts = datetime(2025, 1, 1, tzinfo=UTC)
    pin = Pin.with_options(CID1, opts, allocations=[P1], timestamp=ts)
    assert pin.max_depth == 0 and pin.allocations == (P1,) and pin.timestamp == ts
    assert pin.options == opts
    fresh = Pin.with_options(CID1, PinOptions())
    assert not is_zero_time(fresh.timestamp) and fresh.timestamp.tzinfo is not None


def test_remote_and_expiry() -> None:
    pin = Pin(cid=CID1, replication_factor_min=1, replication_factor_max=2, allocations=(P1,))
    assert not pin.is_remote_pin(P1)
    assert pin.is_remote_pin(P2)
    assert not Pin(cid=CID1, replication_factor_min=-1, replication_factor_max=-1).is_remote_pin(P2)
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert not pin.expired_at(now)
    exp = pin.replace(expire_at=now - timedelta(seconds=1))
    assert exp.expired_at(now)
    assert not exp.expired_at(now - timedelta(hours=1))
    assert not pin.replace(expire_at=datetime(1970, 1, 1, tzinfo=UTC)).expired_at(now)


# --- GlobalPinInfo merge (§2.5) -----------------------------------------------------------------------------
def _info(peer: PeerID, status: TrackerStatus, name: str) -> PinInfo:
    return PinInfo(cid=CID1, peer=peer, status=status, name=name, allocations=(), peername=str(peer)[-4:])


def test_global_merge_rule() -> None:
    ok1 = _info(P1, TrackerStatus.PINNED, "from-p1")
    err = _info(P2, TrackerStatus.CLUSTER_ERROR, "from-error")
    ok3 = _info(P3, TrackerStatus.PINNING, "from-p3")
    g = GlobalPinInfo.from_pin_infos([ok1, err])
    assert g.name == "from-p1"  # a cluster_error does not take over
    assert set(g.peer_map) == {P1, P2}
    assert g.peer_map[P2].status == TrackerStatus.CLUSTER_ERROR
    assert GlobalPinInfo.from_pin_infos([err]).name == "from-error"  # the first one always sets
    assert GlobalPinInfo.from_pin_infos([err, ok3]).name == "from-p3"
    g2 = ok1.to_global().add(err).add(ok3)
    assert g2.name == "from-p3" and len(g2.peer_map) == 3
    assert g2.match(TrackerStatus.ERROR) and not g2.match(TrackerStatus.REMOTE)
    with pytest.raises(InvalidInput):
        GlobalPinInfo.from_pin_infos([])


def test_metric_ttl_with_injected_clock() -> None:
    m = Metric(name="freespace", peer=P1, value="100", valid=True).with_ttl(timedelta(seconds=30), now_ns=1000)
    assert m.expire == 30_000_001_000
    assert not m.expired(now_ns=30_000_001_000)
    assert m.expired(now_ns=30_000_001_001)
    assert m.discard(now_ns=40_000_000_000)
    assert not m.discard(now_ns=2000)
    assert Metric(valid=False).discard(0)  # invalid metrics are always discarded
    assert m.ttl_ns(1000) == 30_000_000_000 and m.ttl_ns(10**12) == 0
    alert = Alert.from_metric(m, datetime(2025, 1, 1, tzinfo=UTC))
    assert alert.metric == m and alert.triggered_at.year == 2025
    assert Alert().triggered_at == ZERO_TIME
