"""consensus.raft configuration: Go keys and defaults, our extensions, and the PySyncObj mapping. One class
reads the section, from service.json or from a bare JSON object (``raft_config``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pysyncobj import SyncObjConf

from pincluster.config.schema import encode_section
from pincluster.config.sections import RaftConfig as ServiceRaftConfig
from pincluster.consensus.config import RaftConfig, raft_config, syncobj_options
from pincluster.errors import ConfigError
from pincluster.types.multiaddr import Multiaddr


def test_the_consensus_takes_the_service_json_section() -> None:
    assert RaftConfig is ServiceRaftConfig  # one reader, one set of checks


def test_defaults_match_go() -> None:
    c = raft_config({})
    m = encode_section(c)
    assert m["wait_for_leader_timeout"] == "15s" and m["network_timeout"] == "10s"
    assert m["commit_retries"] == 0  # literal key: missing means 0, as in Go
    assert m["commit_retry_delay"] == "200ms" and m["snapshot_interval"] == "2m0s"
    assert m["heartbeat_timeout"] == "1s" and m["leader_lease_timeout"] == "500ms"
    assert m["max_append_entries"] == 64 and m["trailing_logs"] == 10240 and m["snapshot_threshold"] == 8192
    assert RaftConfig().commit_retries == 1
    assert c.compaction_min_entries == 100_000 and c.compaction_max_bytes == 16 * 1024 * 1024
    assert "compaction_max_bytes" not in m  # an extension written only when changed
    assert encode_section(raft_config({"compaction_max_bytes": 1 << 20}))["compaction_max_bytes"] == 1 << 20


def test_go_written_section_and_unknown_keys() -> None:
    raw = {
        "init_peerset": [], "wait_for_leader_timeout": "20s", "commit_retries": 2,
        "election_timeout": "1.5s", "snapshot_interval": "1m30s", "heartbeat_timeout": "",
        "some_future_key": True, "listen_multiaddress": "/ip4/127.0.0.1/tcp/4000",
    }
    c = raft_config(raw)
    assert c.wait_for_leader_timeout == timedelta(seconds=20) and c.commit_retries == 2
    assert c.election_timeout == timedelta(seconds=1.5) and c.snapshot_interval == timedelta(seconds=90)
    assert c.heartbeat_timeout == timedelta(seconds=1)  # empty keeps the default
    assert c.listen_multiaddress == Multiaddr("/ip4/127.0.0.1/tcp/4000")
    # as in Go, commit_timeout has no upper bound (it bounds nothing here: entries go out every Raft tick)
    assert raft_config({"commit_timeout": "2s"}).commit_timeout == timedelta(seconds=2)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"network_timeout": "ten seconds"}, "raft.network_timeout"),
        ({"network_timeout": 10}, "raft.network_timeout"),
        ({"backups_rotate": "6"}, "raft.backups_rotate"),
        ({"init_peerset": "QmA"}, "raft.init_peerset"),
        ({"compaction_min_entries": 1}, "raft.compaction_min_entries"),
        ({"compaction_max_bytes": -1}, "raft.compaction_max_bytes"),
        ({"election_timeout": "10ms", "heartbeat_timeout": "10ms", "leader_lease_timeout": "5ms"},
         "raft.election_timeout"),
        ({"listen_multiaddress": "/ip4/1.2.3.4/udp/1"}, "raft.listen_multiaddress"),
    ],
)
def test_errors_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as ei:
        raft_config(raw)
    assert ei.value.key == key


def test_syncobj_options_are_valid_for_pysyncobj() -> None:
    for raw in ({}, {"election_timeout": "300ms", "heartbeat_timeout": "300ms", "leader_lease_timeout": "300ms",
                     "commit_timeout": "10ms"}, {"network_timeout": "1s"}):
        opts = syncobj_options(raft_config(raw))
        SyncObjConf(**opts).validate()
        assert opts["logCompactionMinEntries"] >= 2
    opts = syncobj_options(raft_config({}))
    assert opts["appendEntriesPeriod"] == pytest.approx(0.1) and opts["raftMinTimeout"] == 1.0
