"""How ``consensus.raft`` (spec §7.3.3) maps onto PySyncObj.

The section itself, with Go's keys, defaults, "default if zero" reading and checks, is
:class:`pincluster.config.sections.RaftConfig`: the one class that reads it, from ``service.json`` or from a
bare JSON object (``raft_config``). The consensus takes it as it is. Three keys are pincluster extensions,
because PySyncObj is not hashicorp/raft over libp2p:

- ``listen_multiaddress`` (default ``/ip4/0.0.0.0/tcp/9098``): where this peer's Raft endpoint listens;
- ``compaction_min_entries`` (default 100000): log entries between two snapshots (PySyncObj's
  ``logCompactionMinEntries``); ``snapshot_interval`` is the time bound;
- ``compaction_max_bytes`` (default 16 MiB, written only when changed): the size bound, since PySyncObj holds
  the journal in memory between snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pincluster.config.schema import decode_section
from pincluster.config.sections import RaftConfig

__all__ = ["RaftConfig", "raft_config", "syncobj_options"]


def raft_config(raw: Mapping[str, Any] | None = None) -> RaftConfig:
    """The section read from a ``consensus.raft`` JSON object and checked (for tools and tests that have no
    ``service.json``), as ``load_config`` reads it: errors name the key the same way (``raft.<key>``)."""
    cfg = decode_section(RaftConfig, dict(raw or {}), RaftConfig(), RaftConfig.COMPONENT)
    cfg.validate()
    return cfg


def syncobj_options(cfg: RaftConfig) -> dict[str, Any]:
    """Keyword arguments for ``pysyncobj.SyncObjConf`` derived from the section (documented in docs)."""
    # Heartbeats every heartbeat_timeout/10 (100 ms by default, as hashicorp-raft), and well within the
    # election timeout. Entries do not wait for them: the consensus sends what each tick added or committed
    # at the end of that tick, so commit_timeout has nothing left to bound. A 10 ms period cost an idle peer
    # ~10% of a core in pickled, sealed heartbeats.
    election = cfg.election_timeout.total_seconds()
    network = cfg.network_timeout.total_seconds()
    period = min(cfg.heartbeat_timeout.total_seconds() / 10, election / 5)
    return {
        "appendEntriesPeriod": period,
        "raftMinTimeout": election,
        "raftMaxTimeout": 2 * election,
        "connectionTimeout": max(network, 2 * election),
        "connectionRetryTime": min(1.0, network),
        "leaderFallbackTimeout": max(cfg.leader_lease_timeout.total_seconds(), 2 * election),
        "logCompactionMinEntries": cfg.compaction_min_entries,
        "logCompactionMinTime": max(cfg.snapshot_interval.total_seconds(), 1.0),
    }
