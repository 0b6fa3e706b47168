"""TrackerStatus filters and names, IPFS pin status, PinType, PinMode (spec §3.1–3.4)."""

from __future__ import annotations

import pytest

from pincluster.errors import InvalidInput
from pincluster.types.status import (
    IPFSPinStatus,
    PinMode,
    PinType,
    TrackerStatus,
    filter_names,
    kubo_pin_args,
)

TS = TrackerStatus


def test_tracker_status_bits_and_composites() -> None:
    expected = {
        "undefined": 0,
        "cluster_error": 2,
        "pin_error": 4,
        "unpin_error": 8,
        "pinned": 16,
        "pinning": 32,
        "unpinning": 64,
        "unpinned": 128,
        "remote": 256,
        "pin_queued": 512,
        "unpin_queued": 1024,
        "sharded": 2048,
        "unexpectedly_unpinned": 4096,
        "error": 14,
        "queued": 1536,
    }
    for name, value in expected.items():
        assert TS.from_string(name) == value
        assert TS(value).json_name == name
        assert TS(value).text_name == name.upper()
    assert TS.ERROR == TS.CLUSTER_ERROR | TS.PIN_ERROR | TS.UNPIN_ERROR
    assert TS.QUEUED == TS.PIN_QUEUED | TS.UNPIN_QUEUED


def test_filter_parsing_rules() -> None:
    assert TS.from_filter_string("") == 0
    assert TS.from_filter_string("pinned") == TS.PINNED
    assert TS.from_filter_string(" pinned , error ") == TS.PINNED | TS.ERROR
    assert TS.from_filter_string("pinned,bogus") == TS.PINNED  # unknown names ignored
    assert TS.from_filter_string("queued,remote") == 1536 | 256
    for bad in ("bogus", "PINNED", ",", "pinned;error"):
        with pytest.raises(InvalidInput, match="invalid filter value"):
            TS.from_filter_string(bad)


def test_match_rule() -> None:
    assert TS.PINNED.match(0)  # filter 0 = all
    assert TS.UNDEFINED.match(TS.PINNED)  # status 0 matches any filter
    assert TS.PIN_ERROR.match(TS.ERROR)
    assert TS.PIN_QUEUED.match(TS.QUEUED)
    assert not TS.PINNED.match(TS.ERROR)
    assert not TS.REMOTE.match(TS.PINNED | TS.PINNING)


def test_combined_names_round_trip() -> None:
    value = TS.PIN_ERROR | TS.PINNED
    assert value.json_name == "pin_error,pinned"
    assert TS.from_string(value.json_name) == value
    assert (TS.ERROR | TS.REMOTE).json_name == "error,remote"  # composites shown when fully set
    assert TS.from_string((TS.ERROR | TS.REMOTE).json_name) == TS.ERROR | TS.REMOTE


def test_help_list() -> None:
    assert filter_names() == [
        "cluster_error",
        "error",
        "pin_error",
        "pin_queued",
        "pinned",
        "pinning",
        "queued",
        "remote",
        "sharded",
        "unexpectedly_unpinned",
        "unpin_error",
        "unpin_queued",
        "unpinned",
        "unpinning",
    ]


def test_ipfs_pin_status() -> None:
    f = IPFSPinStatus.from_string
    assert f("recursive") is IPFSPinStatus.RECURSIVE
    assert f("direct") is IPFSPinStatus.DIRECT
    assert f("indirect through QmbrCtydGyPeHiLURSPMqrvE5mCgMCwFYq3UD4XLCeAYw6") is IPFSPinStatus.INDIRECT
    assert f("weird") is IPFSPinStatus.BUG
    assert f("") is IPFSPinStatus.BUG
    m = IPFSPinStatus.to_tracker_status
    assert m(IPFSPinStatus.DIRECT) == TS.PINNED
    assert m(IPFSPinStatus.RECURSIVE) == TS.PINNED
    assert m(IPFSPinStatus.INDIRECT) == TS.UNPINNED
    assert m(IPFSPinStatus.UNPINNED) == TS.UNPINNED
    assert m(IPFSPinStatus.ERROR) == TS.CLUSTER_ERROR
    # pinned as required
    assert IPFSPinStatus.RECURSIVE.is_pinned(-1)
    assert not IPFSPinStatus.DIRECT.is_pinned(-1)
    assert IPFSPinStatus.DIRECT.is_pinned(0)
    assert not IPFSPinStatus.RECURSIVE.is_pinned(0)
    assert IPFSPinStatus.RECURSIVE.is_pinned(1)
    assert not IPFSPinStatus.INDIRECT.is_pinned(1)
    assert IPFSPinStatus.INDIRECT.json_name == "indirect"
    assert IPFSPinStatus.BUG.json_name == ""


def test_pin_type_filters() -> None:
    assert PinType.from_filter_string("") is PinType.ALL
    assert PinType.from_filter_string("all") is PinType.ALL
    assert PinType.from_filter_string("pin") is PinType.DATA
    assert PinType.from_filter_string("meta-pin") is PinType.META
    assert PinType.from_filter_string("clusterdag-pin") is PinType.CLUSTER_DAG
    assert PinType.from_filter_string("shard-pin") is PinType.SHARD
    assert PinType.from_filter_string("nope") is PinType.BAD
    for t in (PinType.DATA, PinType.META, PinType.CLUSTER_DAG, PinType.SHARD):
        assert t.match(PinType.ALL)
        assert t.match(t)
    assert not PinType.DATA.match(PinType.SHARD)
    assert not PinType.BAD.match(PinType.ALL)
    assert [t.bits for t in PinType] == [1, 2, 4, 8, 16, 30]


def test_pin_mode_and_depth() -> None:
    assert PinMode.from_string("") is PinMode.RECURSIVE
    assert PinMode.from_string("recursive") is PinMode.RECURSIVE
    assert PinMode.from_string("direct") is PinMode.DIRECT
    assert PinMode.from_string("sideways") is PinMode.RECURSIVE
    assert PinMode.RECURSIVE.to_max_depth() == -1
    assert PinMode.DIRECT.to_max_depth() == 0
    assert PinMode.from_max_depth(-1) is PinMode.RECURSIVE
    assert PinMode.from_max_depth(0) is PinMode.DIRECT
    assert PinMode.from_max_depth(1) is PinMode.RECURSIVE
    assert kubo_pin_args(-1) == (("recursive", "true"),)
    assert kubo_pin_args(0) == (("recursive", "false"),)
    assert kubo_pin_args(1) == (("recursive", "true"), ("max-depth", "1"))
