"""consensus.raft configuration: Go keys and defaults, our extensions, and the PySyncObj mapping."""

from __future__ import annotations

import pytest
from pysyncobj import SyncObjConf

from pincluster.consensus.config import RaftConfig, format_duration, parse_duration
from pincluster.errors import ConfigError


def test_defaults_match_go() -> None:
    c = RaftConfig.from_mapping({})
    m = c.to_mapping()
    assert m["wait_for_leader_timeout"] == "15s" and m["network_timeout"] == "10s"
    assert m["commit_retries"] == 0  # literal key: missing means 0, as in Go
    assert m["commit_retry_delay"] == "200ms" and m["snapshot_interval"] == "2m0s"
    assert m["heartbeat_timeout"] == "1s" and m["leader_lease_timeout"] == "500ms"
    assert m["max_append_entries"] == 64 and m["trailing_logs"] == 10240 and m["snapshot_threshold"] == 8192
    assert RaftConfig().commit_retries == 1
    assert c.compaction_min_entries == 100_000


def test_go_written_section_and_unknown_keys() -> None:
    raw = {
        "init_peerset": ["QmA", "QmB"], "wait_for_leader_timeout": "20s", "commit_retries": 2,
        "election_timeout": "1.5s", "snapshot_interval": "1m30s", "heartbeat_timeout": "0",
        "some_future_key": True, "listen_multiaddress": "/ip4/127.0.0.1/tcp/4000",
    }
    c = RaftConfig.from_mapping(raw)
    assert c.init_peerset == ("QmA", "QmB") and c.wait_for_leader_timeout == 20.0 and c.commit_retries == 2
    assert c.election_timeout == 1.5 and c.snapshot_interval == 90.0
    assert c.heartbeat_timeout == 1.0  # zero keeps the default
    assert c.extra == {"some_future_key": True}
    assert c.listen_multiaddress == "/ip4/127.0.0.1/tcp/4000"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"network_timeout": "ten seconds"}, "consensus.raft.network_timeout"),
        ({"network_timeout": 10}, "consensus.raft.network_timeout"),
        ({"backups_rotate": "6"}, "consensus.raft.backups_rotate"),
        ({"init_peerset": "QmA"}, "consensus.raft.init_peerset"),
        ({"compaction_min_entries": 1}, "consensus.raft.compaction_min_entries"),
        ({"election_timeout": "10ms"}, "consensus.raft.election_timeout"),
    ],
)
def test_errors_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as ei:
        RaftConfig.from_mapping(raw)
    assert ei.value.key == key


def test_durations() -> None:
    assert parse_duration("2m0s", "k") == 120.0
    assert parse_duration("1h1m1.5s", "k") == 3661.5
    assert parse_duration("250ms", "k") == 0.25
    assert format_duration(120.0) == "2m0s" and format_duration(0.05) == "50ms"


def test_syncobj_options_are_valid_for_pysyncobj() -> None:
    for raw in ({}, {"election_timeout": "300ms", "commit_timeout": "10ms"}, {"network_timeout": "1s"}):
        opts = RaftConfig.from_mapping(raw).syncobj_options()
        SyncObjConf(**opts).validate()
        assert opts["logCompactionMinEntries"] >= 2
