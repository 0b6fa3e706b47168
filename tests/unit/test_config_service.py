"""service.json: defaults, round trip, Go configs, parsing styles, env overrides, validation errors."""

from __future__ import annotations

import json
import os
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pincluster.config.schema import env_names
from pincluster.config.sections import ClusterConfig, RaftConfig
from pincluster.config.service import (
    ServiceConfig,
    default_config,
    load_config,
    parse_config,
)
from pincluster.errors import ConfigError
from pincluster.types.multiaddr import Multiaddr

SECRET = "af80ea2db13e2421390263565d141ca23a5bb53f1c9904c9ee4b71191986fbb3"

# Spec §7.2 as ipfs-cluster-service init --consensus raft writes it (no datastore section with raft).
SPEC_DEFAULT_RAFT = """{
  "cluster": {
    "peername": "peer0",
    "secret": "@SECRET@",
    "leave_on_shutdown": false,
    "listen_multiaddress": [
      "/ip4/0.0.0.0/tcp/9096",
      "/ip4/0.0.0.0/udp/9096/quic"
    ],
    "announce_multiaddress": [],
    "no_announce_multiaddress": [],
    "enable_relay_hop": true,
    "connection_manager": {
      "high_water": 400,
      "low_water": 100,
      "grace_period": "2m0s"
    },
    "resource_manager": {
      "enabled": true,
      "memory_limit_bytes": 0,
      "file_descriptors_limit": 0
    },
    "pubsub": {
      "seen_messages_ttl": "30m0s",
      "heartbeat_interval": "10s",
      "d_factor": 4,
      "history_gossip": 2,
      "history_length": 6,
      "flood_publish": false
    },
    "dial_peer_timeout": "3s",
    "state_sync_interval": "5m0s",
    "pin_recover_interval": "12m0s",
    "replication_factor_min": -1,
    "replication_factor_max": -1,
    "monitor_ping_interval": "15s",
    "peer_watch_interval": "5s",
    "mdns_interval": "10s",
    "pin_only_on_trusted_peers": false,
    "pin_only_on_untrusted_peers": false,
    "disable_repinning": true,
    "peer_addresses": []
  },
  "consensus": {
    "raft": {
      "init_peerset": [],
      "wait_for_leader_timeout": "15s",
      "network_timeout": "10s",
      "commit_retries": 1,
      "commit_retry_delay": "200ms",
      "backups_rotate": 6,
      "heartbeat_timeout": "1s",
      "election_timeout": "1s",
      "commit_timeout": "50ms",
      "max_append_entries": 64,
      "trailing_logs": 10240,
      "snapshot_interval": "2m0s",
      "snapshot_threshold": 8192,
      "leader_lease_timeout": "500ms",
      "listen_multiaddress": "/ip4/0.0.0.0/tcp/9098",
      "compaction_min_entries": 100000
    }
  },
  "api": {
    "ipfsproxy": {
      "listen_multiaddress": "/ip4/127.0.0.1/tcp/9095",
      "node_multiaddress": "/ip4/127.0.0.1/tcp/5001",
      "log_file": "",
      "read_timeout": "0s",
      "read_header_timeout": "5s",
      "write_timeout": "0s",
      "idle_timeout": "1m0s",
      "max_header_bytes": 4096
    },
    "pinsvcapi": {
      "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/9097",
      "read_timeout": "0s",
      "read_header_timeout": "5s",
      "write_timeout": "0s",
      "idle_timeout": "2m0s",
      "max_header_bytes": 4096,
      "basic_auth_credentials": null,
      "http_log_file": "",
      "headers": {},
      "cors_allowed_origins": [
        "*"
      ],
      "cors_allowed_methods": [
        "GET"
      ],
      "cors_allowed_headers": [],
      "cors_exposed_headers": [
        "Content-Type",
        "X-Stream-Output",
        "X-Chunked-Output",
        "X-Content-Length"
      ],
      "cors_allow_credentials": true,
      "cors_max_age": "0s"
    },
    "restapi": {
      "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/9094",
      "read_timeout": "0s",
      "read_header_timeout": "5s",
      "write_timeout": "0s",
      "idle_timeout": "2m0s",
      "max_header_bytes": 4096,
      "basic_auth_credentials": null,
      "http_log_file": "",
      "headers": {},
      "cors_allowed_origins": [
        "*"
      ],
      "cors_allowed_methods": [
        "GET"
      ],
      "cors_allowed_headers": [],
      "cors_exposed_headers": [
        "Content-Type",
        "X-Stream-Output",
        "X-Chunked-Output",
        "X-Content-Length"
      ],
      "cors_allow_credentials": true,
      "cors_max_age": "0s"
    }
  },
  "ipfs_connector": {
    "ipfshttp": {
      "node_multiaddress": "/ip4/127.0.0.1/tcp/5001",
      "connect_swarms_delay": "30s",
      "ipfs_request_timeout": "5m0s",
      "pin_timeout": "2m0s",
      "unpin_timeout": "3h0m0s",
      "repogc_timeout": "24h0m0s",
      "informer_trigger_interval": 0
    }
  },
  "pin_tracker": {
    "stateless": {
      "concurrent_pins": 10,
      "priority_pin_max_age": "24h0m0s",
      "priority_pin_max_retries": 5
    }
  },
  "monitor": {
    "pubsubmon": {
      "check_interval": "15s"
    }
  },
  "allocator": {
    "balanced": {
      "allocate_by": [
        "tag:group",
        "freespace"
      ]
    }
  },
  "informer": {
    "disk": {
      "metric_ttl": "30s",
      "metric_type": "freespace"
    },
    "pinqueue": {
      "metric_ttl": "30s",
      "weight_bucket_size": 100000
    },
    "tags": {
      "metric_ttl": "30s",
      "tags": {
        "group": "default"
      }
    }
  },
  "observations": {
    "metrics": {
      "enable_stats": false,
      "prometheus_endpoint": "/ip4/127.0.0.1/tcp/8888",
      "reporting_interval": "30s"
    },
    "tracing": {
      "enable_tracing": false,
      "jaeger_agent_endpoint": "/ip4/0.0.0.0/udp/6831",
      "sampling_prob": 0.3,
      "service_name": "cluster-daemon"
    }
  }
}""".replace("@SECRET@", SECRET)

# An old (0.x era) Go config: removed keys and sections, a legacy identity in "cluster", string durations in
# odd forms, a string listen address; Go loads it, so must we.
OLD_GO_CONFIG: dict[str, Any] = {
    "cluster": {
        "secret": SECRET,
        "peers": [],
        "bootstrap": [],
        "leave_on_shutdown": False,
        "listen_multiaddress": "/ip4/0.0.0.0/tcp/9096",
        "state_sync_interval": "1m0s",
        "ipfs_sync_interval": "2m10s",
        "replication_factor": -1,
        "monitor_ping_interval": "15s",
    },
    "consensus": {
        "raft": {
            "heartbeat_timeout": "1s",
            "election_timeout": "1s",
            "commit_timeout": "50ms",
            "max_append_entries": 64,
            "trailing_logs": 10240,
            "snapshot_interval": "2m0s",
            "snapshot_threshold": 8192,
            "leader_lease_timeout": "500ms",
            "wait_for_leader_timeout": "0h0m15s",
        }
    },
    "api": {
        "restapi": {
            "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/9094",
            "read_timeout": "30s",
            "basic_auth_credentials": {"testuser": "testpass"},
        }
    },
    "ipfs_connector": {
        "ipfshttp": {
            "proxy_listen_multiaddress": "/ip4/127.0.0.1/tcp/9095",
            "node_multiaddress": "/ip4/127.0.0.1/tcp/5001",
            "connect_swarms_delay": "7s",
            "proxy_read_timeout": "10m0s",
            "pin_method": "pin",
            "pin_timeout": "0h2m0s",
        }
    },
    "monitor": {"monbasic": {"check_interval": "15s"}, "pubsubmon": {"check_interval": "15s"}},
    "informer": {"disk": {"metric_ttl": "30s", "metric_type": "freespace"}, "numpin": {"metric_ttl": "10s"}},
    "state": {"some": "thing"},
    "something_new": {"x": 1},
}


def _parse(raw: dict[str, Any], env: dict[str, str] | None = None) -> ServiceConfig:
    return parse_config(raw, environ=env or {})


def test_spec_default_round_trips_byte_for_byte() -> None:
    cfg = _parse(json.loads(SPEC_DEFAULT_RAFT))
    assert cfg.to_json() == SPEC_DEFAULT_RAFT
    assert cfg.consensus() == "raft"
    assert cfg.cluster.secret == bytes.fromhex(SECRET)
    assert cfg.raft.wait_for_leader_timeout == timedelta(seconds=15)
    assert cfg.restapi.http_listen_multiaddress == (Multiaddr("/ip4/127.0.0.1/tcp/9094"),)


def test_init_defaults_match_spec_default() -> None:
    cfg = default_config("raft", secret=bytes.fromhex(SECRET))
    cfg = cfg.replace(cluster=ClusterConfig(peername="peer0", secret=cfg.cluster.secret))
    assert cfg.to_json() == SPEC_DEFAULT_RAFT


def test_save_and_load_file_modes(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "cfg"
    cfg = default_config("raft", folder)
    path = cfg.save()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    loaded = load_config(folder, environ={})
    assert loaded.to_json() == cfg.to_json()
    assert loaded.folder == folder
    assert loaded.raft_data_path() == folder / "raft"
    assert loaded.peerstore_path() == folder / "peerstore"


def test_missing_file_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ipfs-cluster-service init"):
        load_config(tmp_path, environ={})


def test_old_go_config_loads() -> None:
    cfg = _parse(OLD_GO_CONFIG)
    c = cfg.cluster
    assert c.listen_multiaddress == (Multiaddr("/ip4/0.0.0.0/tcp/9096"),)
    assert c.state_sync_interval == timedelta(minutes=1)
    assert c.replication_factor_min == -1 and c.replication_factor_max == -1  # default if zero
    assert c.enable_relay_hop is False  # literal: missing means false
    assert c.disable_repinning is False  # literal: missing means false
    assert c.peername  # default if zero: hostname
    assert cfg.raft.wait_for_leader_timeout == timedelta(seconds=15)
    assert cfg.raft.commit_retries == 0  # literal
    assert cfg.raft.backups_rotate == 6  # default if zero
    assert cfg.ipfshttp.pin_timeout == timedelta(minutes=2)
    assert cfg.ipfshttp.connect_swarms_delay == timedelta(seconds=7)
    assert cfg.restapi.basic_auth_credentials == {"testuser": "testpass"}
    assert cfg.restapi.cors_allowed_origins == ()  # literal
    # presence
    assert cfg.is_loaded("api.restapi") and not cfg.is_loaded("api.ipfsproxy")
    assert cfg.is_loaded("informer.disk") and not cfg.is_loaded("informer.tags")
    assert not cfg.is_loaded("allocator.balanced")
    assert cfg.balanced.allocate_by == ("freespace",)
    # saving writes present components only, canonical durations, and drops unknown keys
    out = cfg.to_dict()
    assert set(out) == {"cluster", "consensus", "api", "ipfs_connector", "monitor", "informer"}
    assert set(out["api"]) == {"restapi"}
    assert set(out["monitor"]) == {"pubsubmon"} and set(out["informer"]) == {"disk"}
    assert out["consensus"]["raft"]["wait_for_leader_timeout"] == "15s"
    assert out["ipfs_connector"]["ipfshttp"]["pin_timeout"] == "2m0s"
    assert "replication_factor" not in out["cluster"] and "peers" not in out["cluster"]
    assert out["cluster"]["listen_multiaddress"] == "/ip4/0.0.0.0/tcp/9096"
    # and what we wrote loads back to the same
    assert _parse(json.loads(cfg.to_json())).to_dict() == out


def test_crdt_config_loads_and_is_preserved() -> None:
    raw = json.loads(SPEC_DEFAULT_RAFT)
    raw["consensus"] = {"crdt": {"cluster_name": "ipfs-cluster", "trusted_peers": ["*"],
                                 "batching": {"max_batch_size": 0, "max_batch_age": "0s"},
                                 "repair_interval": "1h0m0s"}}  # fmt: skip
    raw["datastore"] = {"pebble": {"pebble_options": {"cache_size_bytes": 1073741824, "levels": [{"a": 1}]}}}
    cfg = _parse(raw)
    assert cfg.consensus() == "crdt"
    assert cfg.datastore().name == "pebble" and cfg.datastore().folder == "pebble"
    assert cfg.to_dict()["datastore"] == raw["datastore"]
    assert cfg.to_dict()["consensus"] == raw["consensus"]


def test_no_or_two_consensus_sections_is_an_error() -> None:
    raw = json.loads(SPEC_DEFAULT_RAFT)
    del raw["consensus"]
    with pytest.raises(ConfigError, match="could not determine the consensus component"):
        _parse(raw).consensus()
    raw["consensus"] = {"raft": {}, "crdt": {}}
    with pytest.raises(ConfigError, match="could not determine"):
        _parse(raw).consensus()


@pytest.mark.parametrize(
    ("path", "value", "key", "fragment"),
    [
        (("cluster", "secret"), "xyz" * 20, "cluster.secret", "not hexadecimal"),
        (("cluster", "secret"), "ab" * 16, "cluster.secret", "too short"),
        (("consensus", "raft", "wait_for_leader_timeout"), "15 seconds", "raft.wait_for_leader_timeout",
         "use a Go duration"),
        (("consensus", "raft", "wait_for_leader_timeout"), 15, "raft.wait_for_leader_timeout", "duration string"),
        (("consensus", "raft", "wait_for_leader_timeout"), "0s", "raft.wait_for_leader_timeout", "invalid"),
        (("cluster", "connection_manager", "low_water"), 500, "cluster.connection_manager.low_water",
         "greater than high_water"),
        (("cluster", "listen_multiaddress"), "/ip4/1.2.3/tcp/1", "cluster.listen_multiaddress", ""),
        (("cluster", "replication_factor_min"), 3, "cluster.replication_factor_min", "-1 when one"),
        (("informer", "disk", "metric_type"), "weight", "disk.metric_type", "freespace"),
        (("api", "restapi", "basic_auth_credentials"), {}, "restapi.basic_auth_credentials", "empty"),
        (("api", "restapi", "ssl_cert_file"), "cert.pem", "restapi.ssl_key_file", "missing"),
        (("cluster", "leave_on_shutdown"), "yes", "cluster.leave_on_shutdown", "true or false"),
        (("pin_tracker", "stateless", "concurrent_pins"), "10", "stateless.concurrent_pins", "integer"),
        (("consensus", "raft", "init_peerset"), ["notapeer"], "raft.init_peerset", "peer"),
        (("observations", "tracing", "otlp_endpoint"), "127.0.0.1:4318", "tracing.otlp_endpoint", "http://"),
    ],
)  # fmt: skip
def test_errors_name_the_key(path: tuple[str, ...], value: Any, key: str, fragment: str) -> None:
    raw = json.loads(SPEC_DEFAULT_RAFT)
    node = raw
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as info:
        _parse(raw)
    assert info.value.key == key
    assert str(info.value).startswith(key + ": ")
    assert fragment in str(info.value)


def test_required_keys() -> None:
    raw = json.loads(SPEC_DEFAULT_RAFT)
    del raw["cluster"]["listen_multiaddress"]
    with pytest.raises(ConfigError, match=r"cluster\.listen_multiaddress: is undefined"):
        _parse(raw)
    raw = json.loads(SPEC_DEFAULT_RAFT)
    raw["cluster"]["listen_multiaddress"] = []
    with pytest.raises(ConfigError, match=r"cluster\.listen_multiaddress"):
        _parse(raw)
    raw = json.loads(SPEC_DEFAULT_RAFT)
    del raw["informer"]["disk"]["metric_ttl"]
    with pytest.raises(ConfigError, match=r"disk\.metric_ttl"):
        _parse(raw)


def test_default_if_zero_and_explicit_zero_duration() -> None:
    raw = json.loads(SPEC_DEFAULT_RAFT)
    raw["cluster"]["peername"] = ""
    raw["cluster"]["mdns_interval"] = "0s"  # explicit 0 is kept (disables mDNS)
    raw["cluster"]["dial_peer_timeout"] = ""  # empty keeps the default
    raw["pin_tracker"]["stateless"]["concurrent_pins"] = 0
    cfg = _parse(raw)
    assert cfg.cluster.peername
    assert cfg.cluster.mdns_interval == timedelta(0)
    assert cfg.cluster.dial_peer_timeout == timedelta(seconds=3)
    assert cfg.stateless.concurrent_pins == 10


def test_strings_accepts_string_or_array_and_writes_go_style() -> None:
    raw = json.loads(SPEC_DEFAULT_RAFT)
    raw["api"]["restapi"]["http_listen_multiaddress"] = ["/ip4/127.0.0.1/tcp/1", "/ip6/::1/tcp/1"]
    raw["cluster"]["listen_multiaddress"] = "/ip4/0.0.0.0/tcp/9096"
    out = _parse(raw).to_dict()
    assert out["api"]["restapi"]["http_listen_multiaddress"] == ["/ip4/127.0.0.1/tcp/1", "/ip6/::1/tcp/1"]
    assert out["cluster"]["listen_multiaddress"] == "/ip4/0.0.0.0/tcp/9096"


def test_omitted_keys_are_written_only_when_set() -> None:
    raw = json.loads(SPEC_DEFAULT_RAFT)
    raw["cluster"]["follower_mode"] = True
    raw["consensus"]["raft"]["datastore_namespace"] = "/other"
    raw["consensus"]["raft"]["data_folder"] = "/var/lib/raft"
    raw["pin_tracker"]["stateless"]["max_pin_queue_size"] = 5
    assert "otlp_endpoint" not in _parse(raw).to_dict()["observations"]["tracing"]  # Go's file, unless set
    raw["observations"]["tracing"]["otlp_endpoint"] = "http://127.0.0.1:4318/v1/traces"
    cfg = _parse(raw)
    out = cfg.to_dict()
    assert out["observations"]["tracing"]["otlp_endpoint"] == "http://127.0.0.1:4318/v1/traces"
    assert out["cluster"]["follower_mode"] is True
    assert next(iter(out["consensus"]["raft"])) == "data_folder"
    assert out["consensus"]["raft"]["datastore_namespace"] == "/other"
    assert out["pin_tracker"]["stateless"]["max_pin_queue_size"] == 5
    assert cfg.raft_data_path() == Path("/var/lib/raft")


def test_env_overrides() -> None:
    raw = json.loads(SPEC_DEFAULT_RAFT)
    other = "11" * 32
    env = {
        "CLUSTER_SECRET": other,
        "CLUSTER_PEERNAME": "from-env",
        "CLUSTER_LEAVEONSHUTDOWN": "true",
        "CLUSTER_LISTENMULTIADDRESS": "/ip4/127.0.0.1/tcp/1000,/ip4/127.0.0.1/tcp/1001",
        "CLUSTER_CONNECTIONMANAGER_HIGHWATER": "800",
        "CLUSTER_RAFT_WAITFORLEADERTIMEOUT": "1m30s",
        "CLUSTER_RAFT_INITPEERSET": "12D3KooWM839sx2fMkfWqGkTyRZtTdW3bsbYRG5iubVXA4Dst8pm",
        "CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS": "/ip4/127.0.0.1/tcp/19094",
        "CLUSTER_RESTAPI_BASICAUTHCREDENTIALS": "alice:pw1,bob:pw2",
        "CLUSTER_RESTAPI_HEADERS": "X-A:1,X-A:2",
        "CLUSTER_TAGS_TAGS": "group:eu,rack:r1",
        "CLUSTER_STATELESS_CONCURRENTPINS": "3",
        "CLUSTER_TRACING_SAMPLINGPROB": "0.5",
        "UNRELATED": "x",
    }
    cfg = _parse(raw, env)
    assert cfg.cluster.secret == bytes.fromhex(other)
    assert cfg.cluster.peername == "from-env"
    assert cfg.cluster.leave_on_shutdown is True
    assert [str(a) for a in cfg.cluster.listen_multiaddress] == ["/ip4/127.0.0.1/tcp/1000", "/ip4/127.0.0.1/tcp/1001"]
    assert cfg.cluster.connection_manager.high_water == 800
    assert cfg.cluster.connection_manager.low_water == 100  # nested: others untouched
    assert cfg.raft.wait_for_leader_timeout == timedelta(seconds=90)
    assert [str(p) for p in cfg.raft.init_peerset] == [env["CLUSTER_RAFT_INITPEERSET"]]
    assert str(cfg.restapi.http_listen_multiaddress[0]) == "/ip4/127.0.0.1/tcp/19094"
    assert cfg.restapi.basic_auth_credentials == {"alice": "pw1", "bob": "pw2"}
    assert cfg.restapi.headers == {"X-A": ("1", "2")}
    assert cfg.tags.tags == {"group": "eu", "rack": "r1"}
    assert cfg.stateless.concurrent_pins == 3
    assert cfg.tracing.sampling_prob == 0.5
    # env wins over the file but does not mark sections present
    assert not _parse(OLD_GO_CONFIG, env).is_loaded("informer.tags")


@pytest.mark.parametrize(
    ("var", "value", "key"),
    [
        ("CLUSTER_SECRET", "xyz", "cluster.secret"),
        ("CLUSTER_RAFT_WAITFORLEADERTIMEOUT", "soon", "raft.wait_for_leader_timeout"),
        ("CLUSTER_CONNECTIONMANAGER_HIGHWATER", "lots", "cluster.connection_manager.high_water"),
        ("CLUSTER_LEAVEONSHUTDOWN", "maybe", "cluster.leave_on_shutdown"),
    ],
)
def test_bad_env_names_key_and_variable(var: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(json.loads(SPEC_DEFAULT_RAFT), {var: value})
    assert info.value.key.startswith(key)


def test_env_names_follow_go_field_names() -> None:
    names = env_names(ClusterConfig, "CLUSTER")
    for n in ("CLUSTER_PEERNAME", "CLUSTER_SECRET", "CLUSTER_MDNSINTERVAL", "CLUSTER_PUBSUB_DFACTOR",
              "CLUSTER_CONNECTIONMANAGER_GRACEPERIOD", "CLUSTER_PEERSTOREFILE", "CLUSTER_PEERADDRESSES"):  # fmt: skip
        assert n in names
    assert "CLUSTER_ID" not in names  # belongs to identity.json
    assert "CLUSTER_RAFT_BACKUPSROTATE" in env_names(RaftConfig, "CLUSTER_RAFT")


def test_source_config_is_fetched_and_written_back_as_source() -> None:
    body = SPEC_DEFAULT_RAFT.encode()
    seen: list[str] = []

    def fetch(url: str) -> bytes:
        seen.append(url)
        return body

    cfg = parse_config({"source": "http://example.test/cfg.json"}, environ={}, fetch=fetch)
    assert seen == ["http://example.test/cfg.json"]
    assert cfg.consensus() == "raft"
    assert cfg.to_dict() == {"source": "http://example.test/cfg.json"}

    with pytest.raises(ConfigError, match="cannot point to another source"):
        parse_config({"source": "http://a"}, environ={}, fetch=lambda u: b'{"source": "http://b"}')


def test_unparsable_json_and_wrong_shapes(tmp_path: Path) -> None:
    (tmp_path / "service.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path, environ={})
    with pytest.raises(ConfigError, match="api: must be a JSON object"):
        _parse({"api": [1]})
    with pytest.raises(ConfigError, match="restapi: must be a JSON object"):
        _parse({"api": {"restapi": "x"}})


def test_crdt_is_refused_by_the_supported_check_and_empty_secret_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw = json.loads(SPEC_DEFAULT_RAFT)
    assert _parse(raw).require_supported_consensus() == "raft"
    raw["consensus"] = {"crdt": {}}
    raw["cluster"]["secret"] = ""
    cfg = _parse(raw)
    assert cfg.cluster.secret == b""
    assert "Cluster secret is empty" in caplog.text
    with pytest.raises(ConfigError, match="not supported by pincluster yet") as info:
        cfg.require_supported_consensus()
    assert info.value.key == "consensus.crdt"


def test_cluster_section_is_always_written() -> None:
    cfg = _parse({"consensus": {"raft": {}}})
    assert list(cfg.to_dict()) == ["cluster", "consensus"]


def test_randomports_never_hands_out_one_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """``init --randomports`` binds nothing until the daemon starts, so each port is only checked free *now*:
    when the random draw repeats, the second listener must still get another port (CI once gave the proxy
    the embedded node's swarm port, and the peer could not start)."""
    from pincluster.cli import service as service_cli

    draws = iter([4242] * 6 + [4343] * 6 + list(range(5000, 5100)))
    monkeypatch.setattr(service_cli.secrets, "randbelow", lambda _n: next(draws))
    first = service_cli.randomize_port(Multiaddr("/ip4/127.0.0.1/tcp/9095"))
    second = service_cli.randomize_port(Multiaddr("/ip4/127.0.0.1/tcp/4001"))
    assert first.tcp_host_port()[1] != second.tcp_host_port()[1]
    cfg = service_cli.randomize_ports(default_config("raft", Path("/nonexistent")), ipfs_api=True)
    ports = [
        a.tcp_host_port()[1]
        for a in (
            *cfg.cluster.listen_multiaddress[:1],
            cfg.raft.listen_multiaddress,
            *cfg.restapi.http_listen_multiaddress,
            *cfg.pinsvcapi.http_listen_multiaddress,
            *cfg.ipfsproxy.listen_multiaddress,
            cfg.ipfshttp.node_multiaddress,
        )
    ]
    assert len(set(ports)) == len(ports), ports


def test_ports_another_process_chose_are_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local network harness records the ports an ``init`` subprocess chose (``claim_ports``): this
    process's ``free_port`` then skips them, and a peer whose ports this process already handed out (say for
    a metrics endpoint not started yet) is refused, to be made again (CI once gave a Raft listener the port a
    test had taken for a peer's Prometheus endpoint)."""
    from pincluster.cli import service as service_cli

    monkeypatch.setattr(service_cli, "_HANDED_OUT", set())
    monkeypatch.setenv(service_cli.RANDOMPORTS_RANGE_ENV, "31000-31009")
    taken = service_cli.free_port()
    assert not service_cli.claim_ports({taken, 31999})  # nothing recorded: 31999 is still free to claim
    rest = sorted(set(range(31000, 31010)) - {taken})
    assert service_cli.claim_ports({*rest[:-1], 31999})
    assert service_cli.free_port() == rest[-1]  # the only port of the range neither handed out nor claimed
