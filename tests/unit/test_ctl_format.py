"""ipfs-cluster-ctl text formats (spec §5.3), byte for byte, and the go-humanize helpers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

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
    humanize_bytes,
    humanize_time,
)
from pincluster.types.cid import CID, b58encode
from pincluster.types.codec import GlobalPinInfoText, PinText, from_json, to_json
from pincluster.types.gotime import ZERO_TIME, parse_time, unix_nano
from pincluster.types.models import (
    ID,
    IPFSID,
    AddedOutput,
    Alert,
    Bandwidth,
    GlobalPinInfo,
    GlobalRepoGC,
    IPFSRepoGC,
    Metric,
    Pin,
    PinInfoShort,
    RepoGC,
    Version,
)
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID
from pincluster.types.status import PinMode, PinType, TrackerStatus

P1 = PeerID.decode("QmUBuxVHoNNjfmNpTad36UeaFQv3gXAtCv9r6KhmeqhEhD")
P2 = PeerID.decode("QmV35LjbEGPfN7KfMAJp43VV2enwXqqQf5esx4vUcgHDQJ")
P3 = PeerID.decode("QmZ2ckU7G35MYyJgMTwMUnicsGqSy3YUxGBX7qny6MQmJu")
I1 = PeerID.decode("QmXbiVZd93SLiu9TAm21F2y9JwGiFLydbEVkPBaMR3DZDV")
C1 = CID.decode("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
C2 = CID.decode("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn")
TS = parse_time("2024-05-06T10:11:12.123456789+02:00")


def test_id() -> None:
    obj = ID(id=P1, peername="alpha", cluster_peers=(P1, P2, P3),
             addresses=(Multiaddr(f"/ip4/192.168.1.2/tcp/9096/p2p/{P1}"),
                        Multiaddr(f"/ip4/127.0.0.1/tcp/9096/p2p/{P1}")),
             ipfs=IPFSID(id=I1, addresses=(Multiaddr("/ip4/127.0.0.1/tcp/4001"), Multiaddr("/ip4/10.0.0.1/tcp/4001"))))
    assert format_id(obj) == (
        f"{P1} | alpha | Sees 2 other peers\n"
        "  > Addresses:\n"
        f"    - /ip4/127.0.0.1/tcp/9096/p2p/{P1}\n"
        f"    - /ip4/192.168.1.2/tcp/9096/p2p/{P1}\n"
        f"  > IPFS: {I1}\n"
        "    - /ip4/10.0.0.1/tcp/4001\n"
        "    - /ip4/127.0.0.1/tcp/4001\n"
    )


def test_id_errors() -> None:
    assert format_id(ID(id=P2, error="context deadline exceeded")) == f"{P2} | ERROR: context deadline exceeded\n"
    obj = ID(id=P1, peername="", cluster_peers=(P1,), ipfs=IPFSID(error="dial tcp: connection refused"))
    assert format_id(obj) == (
        f"{P1} |  | Sees 0 other peers\n  > Addresses:\n  > IPFS ERROR: dial tcp: connection refused\n")


def test_global_pin_info() -> None:
    gpi = GlobalPinInfo(cid=C1, name="my pin", peer_map={
        P3: PinInfoShort(peername="", status=TrackerStatus.PIN_ERROR, timestamp=TS, error="boom", attempt_count=3),
        P1: PinInfoShort(peername="zed", status=TrackerStatus.PINNED,
                         timestamp=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), priority_pin=True),
        P2: PinInfoShort(peername="a-very-long-peer-name-indeed", status=TrackerStatus.UNEXPECTEDLY_UNPINNED,
                         timestamp=ZERO_TIME, error="the item should be pinned but it is not"),
    })
    assert format_gpi(gpi) == (
        f"{C1} | my pin:\n"
        "    > zed                  : PINNED | 2024-01-02T03:04:05Z | Attempts: 0 | Priority: true\n"
        "    > a-very-long-peer-name-indeed : UNEXPECTEDLY_UNPINNED: the item should be pinned but it is not"
        " | 0001-01-01T00:00:00Z | Attempts: 0 | Priority: false\n"
        f"    > {P3} : PIN_ERROR: boom | 2024-05-06T10:11:12.123456789+02:00 | Attempts: 3 | Priority: false\n"
    )
    assert format_gpi(GlobalPinInfo(cid=C2)) == f"{C2}:\n"


def test_status_view_prints_what_format_gpi_prints() -> None:
    """``status`` prints from a StatusView (text fields only); every line must be what the whole GlobalPinInfo
    gives, including what a Go daemon or an older one may send."""
    gpi = GlobalPinInfo(cid=C1, name="my pin ünï <&>", created=TS, allocations=(P1,), metadata={"k": "v"}, peer_map={
        P1: PinInfoShort(peername="zed", status=TrackerStatus.PINNED,
                         timestamp=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), priority_pin=True),
        P3: PinInfoShort(status=TrackerStatus.PIN_ERROR, timestamp=TS, error="boom", attempt_count=3),
        P2: PinInfoShort(peername="a-very-long-peer-name-indeed", status=TrackerStatus.UNEXPECTEDLY_UNPINNED,
                         timestamp=ZERO_TIME, error="the item should be pinned but it is not"),
    })
    v1 = CID.decode("bafkreidgvpkjawlxz6sffxzwgooowe5yt7i6wsyg236mfoks77nywkptdq")
    z = "z" + b58encode(v1.bytes)
    t = "2024-05-06T10:11:12.5Z"
    lines = [
        to_json(gpi),
        to_json(GlobalPinInfo(cid=C2)),
        to_json(GlobalPinInfo(cid=v1, peer_map={P1: PinInfoShort(status=TrackerStatus.PINNING, timestamp=TS)})),
        # a v1 CID in base58, a pre-1.0 {"/": cid}, times not in Go's own form, a status this version does not
        # know, a missing timestamp, a null peer_map
        f'{{"cid":"{z}","peer_map":{{"{P1}":{{"status":"pinned","timestamp":"2024-05-06T10:11:12.500000Z"}}}}}}'.encode(),
        f'{{"cid":{{"/":"{C1}"}},"name":"x","peer_map":{{"{P2}":{{"peername":"p","status":"frobbed",'
        f'"timestamp":"2024-05-06T08:11:12+00:00"}},"{P1}":{{"status":"remote"}}}}}}'.encode(),
        f'{{"cid":"{C2}","peer_map":null}}'.encode(),
        f'{{"cid":"{C2}","peer_map":{{"{P1}":{{"status":"pinned","timestamp":"{t}"}},'
        f'"{P2}":{{"status":"pinned","timestamp":"{t}"}}}}}}'.encode(),
    ]
    # --enc json: every field written again from the texts
    lines += [
        to_json(GlobalPinInfo(
            cid=C2, name="a\u2028b <&>", allocations=(P2, P1), origins=(Multiaddr(f"/ip4/1.2.3.4/tcp/4001/p2p/{I1}"),),
            created=TS, metadata={"z": "1", "a": "<2>"}, peer_map={
                P1: PinInfoShort(peername="p1", ipfs_peer_id=I1, status=TrackerStatus.PINNED, timestamp=TS,
                                 ipfs_peer_addresses=(Multiaddr("/ip4/127.0.0.1/tcp/4001"),
                                                      Multiaddr("/ip6/::1/udp/4001/quic-v1"))),
            })),
        f'{{"cid":"{C1}","allocations":["{P1.to_cid()}"],"origins":[],"created":"2024-05-06T10:11:12.120Z",'
        f'"metadata":{{}},"peer_map":{{"{P2.to_cid()}":{{"peername":"x","ipfs_peer_id":"{I1.to_cid()}",'
        f'"ipfs_peer_addresses":[],"status":"pin_error","timestamp":"2024-05-06T10:11:12.5-03:00",'
        f'"error":"e","attempt_count":2,"priority_pin":true}}}},"extra":1}}'.encode(),
    ]
    _assert_views_print_as_objects(lines, GlobalPinInfo, format_gpi, (StatusView, format_status_view),
                                   (GlobalPinInfoText, format_gpi_text_json))
    assert format_status_view(from_json(lines[3], StatusView)).startswith(f"{v1}:\n")  # converted to base32


def test_pin_view_prints_what_format_pin_prints() -> None:
    """``pin ls`` prints from a PinView; every line must be what the whole Pin gives, for what a Go daemon
    or an older one may send too."""
    tz = timezone(timedelta(hours=-5))
    v1 = CID.decode("bafkreidgvpkjawlxz6sffxzwgooowe5yt7i6wsyg236mfoks77nywkptdq")
    z = "z" + b58encode(v1.bytes)
    pins = [
        Pin(cid=C1, replication_factor_min=-1, replication_factor_max=-1, timestamp=TS),
        Pin(cid=C2, name="n <&> ü", mode=PinMode.DIRECT, replication_factor_min=1, replication_factor_max=2,
            allocations=(P3, P1, P2), metadata={"k": "v"}, expire_at=datetime(2030, 1, 2, 3, 4, 5, 999, tzinfo=tz),
            timestamp=datetime(2024, 5, 6, 23, 59, 59, 123456, tzinfo=UTC)),
        Pin(cid=v1, type=PinType.SHARD, max_depth=1, replication_factor_min=2, replication_factor_max=2,
            metadata={}),
        Pin(cid=C1, type=PinType.META, max_depth=0, reference=C2, allocations=(P2,)),
        Pin(cid=C1, type=PinType.CLUSTER_DAG, max_depth=7, timestamp=datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC)),
    ]
    lines = [to_json(p) for p in pins] + [
        # no max_depth (from the mode), pre-1.0 CID, CIDv1-form peer IDs, times with offsets, a zero time
        # written with an offset
        f'{{"cid":{{"/":"{C2}"}},"mode":"direct","allocations":["{P1.to_cid()}"],'
        f'"replication_factor_min":1,"replication_factor_max":1,"timestamp":"2024-05-06T10:11:12.5+02:00",'
        f'"expire_at":"0001-01-01T01:00:00+01:00"}}'.encode(),
        f'{{"cid":"{C1}","max_depth":0,"mode":"recursive","allocations":[],"metadata":{{"a":"b"}},'
        f'"timestamp":"0001-01-01T00:00:00Z","expire_at":"2031-02-03T04:05:06.000000007Z"}}'.encode(),
        f'{{"cid":"{C1}","max_depth":-1,"mode":"direct"}}'.encode(),
    ]
    # --enc json: every field written again from the texts
    lines += [
        to_json(Pin(cid=C2, name="<n>", replication_factor_min=2, replication_factor_max=3, shard_size=100,
                    user_allocations=(P2, P1), origins=(Multiaddr(f"/ip4/1.2.3.4/tcp/4001/p2p/{I1}"),),
                    pin_update=C1, reference=v1, metadata={"b": "2", "a": "1"}, expire_at=TS, timestamp=TS)),
        f'{{"cid":"{C1}","mode":"direct","max_depth":3,"user_allocations":["{P1.to_cid()}"],'
        f'"pin_update":{{"/":"{C2}"}},"reference":"{z}","origins":null,"allocations":["{P2.to_cid()}"],'
        f'"timestamp":"2024-05-06T10:11:12.100Z","unknown":[1]}}'.encode(),
    ]
    _assert_views_print_as_objects(lines, Pin, format_pin, (PinView, format_pin_view),
                                   (PinText, format_pin_text_json))


def _assert_views_print_as_objects(lines: list[bytes], model: type[Any], text: Callable[[Any], str],
                                   view: tuple[type[Any], Callable[[Any], str]],
                                   as_sent: tuple[type[Any], Callable[[Any], str]]) -> None:
    """Each line printed from its view (text) and from its values as sent (``--enc json``) is what the whole
    object prints."""
    for line in lines:
        full = from_json(line, model)
        assert view[1](from_json(line, view[0])) == text(full), line
        assert as_sent[1](from_json(line, as_sent[0])) == format_json(full), line


def test_pin() -> None:
    tz = timezone(timedelta(hours=2))
    everywhere = Pin(cid=C1, replication_factor_min=-1, replication_factor_max=-1,
                     timestamp=datetime(2024, 5, 6, 10, 11, 12, tzinfo=tz))
    assert format_pin(everywhere) == (
        f"{C1} |  | PIN | Repl. Factor: -1 | Allocations: [everywhere] | Recursive | Metadata: no"
        " | Exp: ∞ | Added: 2024-05-06 10:11:12\n")
    direct = Pin(cid=C2, name="n", mode=PinMode.DIRECT, replication_factor_min=1, replication_factor_max=2,
                 allocations=(P3, P1), metadata={"k": "v"},
                 expire_at=datetime(2030, 1, 2, 3, 4, 5, 999, tzinfo=UTC))
    assert format_pin(direct) == (
        f"{C2} | n | PIN-DIRECT | Repl. Factor: 1--2 | Allocations: [{P1} {P3}] | Direct | Metadata: yes"
        " | Exp: 2030-01-02 03:04:05 | Added: unknown\n")
    shard = Pin(cid=C2, type=PinType.SHARD, max_depth=1, replication_factor_min=2, replication_factor_max=2)
    assert format_pin(shard) == (
        f"{C2} |  | SHARD-PIN | Repl. Factor: 2--2 | Allocations: [] | Recursive-1 | Metadata: no"
        " | Exp: ∞ | Added: unknown\n")


def test_added_version_names_error() -> None:
    ev = AddedOutput(name="dir/a.txt", cid=C1, size=12)
    assert format_added(ev) == f"added {C1} dir/a.txt\n"
    assert format_added(AddedOutput(name="", cid=C1)) == f"added {C1} \n"
    assert format_added(ev, quiet=True) == f"{C1}\n"
    assert format_version(Version(version="1.1.6")) == "1.1.6\n"
    assert format_metric_names(["freespace", "ping"]) == "freespace\nping\n"
    assert format_error(404, "pin is not part of the pinset") == (
        "An error occurred:\n  Code: 404\n  Message: pin is not part of the pinset\n")
    assert format_error(500, "a<b", json=True) == '{\n    "code": 500,\n    "message": "a\\u003cb"\n}\n'


def test_json_is_go_marshal_indent() -> None:
    assert format_json(Version(version="1.1.6")) == '{\n    "version": "1.1.6"\n}\n'
    text = format_json(AddedOutput(name="a", cid=C1, size=3))
    assert text == f'{{\n    "name": "a",\n    "cid": "{C1}",\n    "size": 3\n}}\n'
    assert format_json([]) == "[]\n"


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (9, "9 B"), (10, "10 B"), (999, "999 B"), (1000, "1.0 kB"), (1500, "1.5 kB"), (9949, "9.9 kB"),
    (9950, "10 kB"), (21_000_000_000, "21 GB"), (5_500_000_000, "5.5 GB"),
    (123_456_789, "124 MB"),  # 123.5: half to even, as Go
    (10**18, "1.0 EB"),
])
def test_humanize_bytes(n: int, text: str) -> None:
    assert humanize_bytes(n) == text


S = 1_000_000_000


@pytest.mark.parametrize(("delta", "text"), [
    (0, "now"), (S // 2, "now"), (S, "1 second from now"), (2 * S, "2 seconds from now"),
    (59 * S, "59 seconds from now"), (60 * S, "1 minute from now"), (119 * S, "1 minute from now"),
    (120 * S, "2 minutes from now"), (3600 * S, "1 hour from now"), (5 * 3600 * S, "5 hours from now"),
    (86400 * S, "1 day from now"), (3 * 86400 * S, "3 days from now"), (7 * 86400 * S, "1 week from now"),
    (20 * 86400 * S, "2 weeks from now"), (45 * 86400 * S, "1 month from now"), (100 * 86400 * S,
                                                                                 "3 months from now"),
    (400 * 86400 * S, "1 year from now"), (600 * 86400 * S, "2 years from now"),
    (3000 * 86400 * S, "8 years from now"), (20000 * 86400 * S, "a long while from now"),
    (-30 * S, "30 seconds ago"), (-2 * 3600 * S, "2 hours ago"),
])
def test_humanize_time(delta: int, text: str) -> None:
    now = 1_700_000_000 * S
    assert humanize_time(now + delta, now) == text


def test_metric_and_alert() -> None:
    now = 1_700_000_000 * S
    free = Metric(name="freespace", peer=P1, value="5500000000", weight=5_500_000_000, expire=now + 30 * S,
                  valid=True)
    assert format_metric(free, now) == f"{P1} | freespace: 5.5 GB | Expires in: 30 seconds from now\n"
    ping = Metric(name="ping", peer=P2, value='{"peer_name":"b"}', expire=now + 90 * S)
    assert format_metric(ping, now) == f'{P2} | ping: {{"peer_name":"b"}} | Expires in: 1 minute from now\n'
    trig = datetime.fromtimestamp(1_700_000_000 - 120, tz=UTC)
    alert = Alert(name="ping", peer=P3, expire=now - 3 * 60 * S, triggered_at=trig)
    assert unix_nano(trig) == now - 120 * S
    assert format_alert(alert, now) == (
        f"{P3}: ping. Expired at: 3 minutes ago. Triggered at: 2 minutes ago\n")


def test_repo_gc() -> None:
    gc = GlobalRepoGC(peer_map={
        P2: RepoGC(peer=P2, peername="", keys=(IPFSRepoGC(key=C1), IPFSRepoGC(error="cannot remove"))),
        P1: RepoGC(peer=P1, peername="alpha", keys=(), error="ipfs is down"),
    })
    assert format_repo_gc(gc) == (
        "alpha           | ERROR: ipfs is down\n"
        "  > CIDs:\n"
        f"{P2}\n"
        "  > CIDs:\n"
        f"    - {C1}\n"
        "    - ERROR: cannot remove\n"
    )


def test_bandwidth() -> None:
    bw = {"/ipfs/id/1.0.0": Bandwidth(total_in=2048, total_out=5, rate_in=1.5, rate_out=0),
          "/ipfscluster/1.0/rpc": Bandwidth(total_in=12_000_000, total_out=3_400_000, rate_in=10.123,
                                            rate_out=2.5)}
    assert format_bandwidth(bw) == (
        "           /ipfs/id/1.0.0: In:  2.0 kB. Out:     5 B. RateIn: 1.50B/s. RateOut: 0.00B/s\n"
        "     /ipfscluster/1.0/rpc: In:   12 MB. Out:  3.4 MB. RateIn: 10.12B/s. RateOut: 2.50B/s\n"
    )
    assert format_bandwidth(None) == ""
