"""``consensus.raft`` configuration (spec §7.3.3) and how it maps onto PySyncObj.

The Go keys are read with Go's defaults ("default if zero" except ``commit_retries`` and ``init_peerset``).
Two keys are pincluster extensions, because PySyncObj is not hashicorp/raft over libp2p:

- ``listen_multiaddress`` (default ``/ip4/0.0.0.0/tcp/9098``): where this peer's Raft endpoint listens;
- ``compaction_min_entries`` (default 100000): log entries between two snapshots (PySyncObj's
  ``logCompactionMinEntries``); ``snapshot_interval`` is the time bound, ``compaction_max_bytes`` the size
  bound (the journal is held in memory between snapshots).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pincluster.errors import ConfigError, InvalidInput
from pincluster.types.gotime import format_duration as go_format_duration
from pincluster.types.gotime import parse_duration_ns


def parse_duration(text: str, key: str) -> float:
    """Go duration text (``"1m30s"``, ``"200ms"``) → seconds, by the data model's Go-duration parser; errors
    name the key."""
    if not isinstance(text, str):
        raise ConfigError(key, f"expected a duration string like \"10s\", got {text!r}")
    if text.strip() in ("0", ""):
        return 0.0
    try:
        return parse_duration_ns(text.strip()) / 1e9
    except InvalidInput as exc:
        raise ConfigError(key, f"{exc} (use Go syntax such as \"1s\" or \"2m0s\")") from None


def format_duration(seconds: float) -> str:
    """Seconds → Go's duration text (for writing configs back)."""
    return go_format_duration(round(seconds * 1e9))


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """The ``consensus.raft`` section. Durations are in seconds."""

    data_folder: str = ""
    init_peerset: tuple[str, ...] = ()
    wait_for_leader_timeout: float = 15.0
    network_timeout: float = 10.0
    commit_retries: int = 1
    commit_retry_delay: float = 0.2
    backups_rotate: int = 6
    datastore_namespace: str = "/r"
    heartbeat_timeout: float = 1.0
    election_timeout: float = 1.0
    commit_timeout: float = 0.05
    max_append_entries: int = 64
    trailing_logs: int = 10240
    snapshot_interval: float = 120.0
    snapshot_threshold: int = 8192
    leader_lease_timeout: float = 0.5
    # pincluster extensions
    listen_multiaddress: str = "/ip4/0.0.0.0/tcp/9098"
    compaction_min_entries: int = 100_000
    compaction_max_bytes: int = 16 * 1024 * 1024
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> RaftConfig:
        """Parse the JSON object of ``consensus.raft``; unknown keys are kept in ``extra`` and ignored."""
        d = cls()
        values: dict[str, Any] = {}
        known = set(cls.__dataclass_fields__) - {"extra"}
        pre = "consensus.raft."

        def dur(name: str) -> None:
            if name in raw and raw[name] not in (None, "", 0, "0"):
                v = parse_duration(raw[name], pre + name)
                if v < 0:
                    raise ConfigError(pre + name, "must not be negative")
                if v > 0:
                    values[name] = v

        def integer(name: str, *, literal: bool = False, minimum: int = 0) -> None:
            if name not in raw or raw[name] is None:
                if literal:
                    values[name] = 0
                return
            v = raw[name]
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError(pre + name, f"expected an integer, got {v!r}")
            if v < minimum:
                raise ConfigError(pre + name, f"must be at least {minimum}, got {v}")
            if v == 0 and not literal:
                return
            values[name] = v

        for name in (
            "wait_for_leader_timeout", "network_timeout", "commit_retry_delay", "heartbeat_timeout",
            "election_timeout", "commit_timeout", "snapshot_interval", "leader_lease_timeout",
        ):
            dur(name)
        integer("commit_retries", literal=True)
        for name in ("backups_rotate", "max_append_entries", "trailing_logs", "snapshot_threshold",
                     "compaction_min_entries", "compaction_max_bytes"):
            integer(name)
        for name in ("data_folder", "datastore_namespace", "listen_multiaddress"):
            if raw.get(name):
                if not isinstance(raw[name], str):
                    raise ConfigError(pre + name, f"expected a string, got {raw[name]!r}")
                values[name] = raw[name]
        peers = raw.get("init_peerset")
        if peers is not None:
            if not isinstance(peers, list) or not all(isinstance(p, str) and p for p in peers):
                raise ConfigError(pre + "init_peerset", "expected a list of peer IDs")
            values["init_peerset"] = tuple(peers)
        values["extra"] = {k: v for k, v in raw.items() if k not in known}
        cfg = cls(**{**{k: getattr(d, k) for k in known}, **values})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        pre = "consensus.raft."
        if self.compaction_min_entries < 2:
            raise ConfigError(pre + "compaction_min_entries", "must be at least 2")
        if self.election_timeout < 0.1:
            raise ConfigError(pre + "election_timeout", "must be at least 100ms")
        if self.commit_timeout <= 0 or self.commit_timeout * 3 >= self.election_timeout * 5:
            raise ConfigError(pre + "commit_timeout", "must be positive and well below election_timeout")

    def to_mapping(self) -> dict[str, Any]:
        """The JSON object Go would write (defaults included), plus our two extension keys."""
        out: dict[str, Any] = {}
        if self.data_folder:
            out["data_folder"] = self.data_folder
        out.update(
            {
                "init_peerset": list(self.init_peerset),
                "wait_for_leader_timeout": format_duration(self.wait_for_leader_timeout),
                "network_timeout": format_duration(self.network_timeout),
                "commit_retries": self.commit_retries,
                "commit_retry_delay": format_duration(self.commit_retry_delay),
                "backups_rotate": self.backups_rotate,
            }
        )
        if self.datastore_namespace != "/r":
            out["datastore_namespace"] = self.datastore_namespace
        out.update(
            {
                "heartbeat_timeout": format_duration(self.heartbeat_timeout),
                "election_timeout": format_duration(self.election_timeout),
                "commit_timeout": format_duration(self.commit_timeout),
                "max_append_entries": self.max_append_entries,
                "trailing_logs": self.trailing_logs,
                "snapshot_interval": format_duration(self.snapshot_interval),
                "snapshot_threshold": self.snapshot_threshold,
                "leader_lease_timeout": format_duration(self.leader_lease_timeout),
                "listen_multiaddress": self.listen_multiaddress,
                "compaction_min_entries": self.compaction_min_entries,
            }
        )
        return out

    def syncobj_options(self) -> dict[str, Any]:
        """Keyword arguments for ``pysyncobj.SyncObjConf`` derived from this section (documented in docs)."""
        # Heartbeats every heartbeat_timeout/10 (100 ms by default, as hashicorp-raft), and well within the
        # election timeout. Entries do not wait for them: the consensus sends what each tick added or committed
        # at the end of that tick, so commit_timeout has nothing left to bound. A 10 ms period cost an idle peer
        # ~10% of a core in pickled, sealed heartbeats.
        period = min(self.heartbeat_timeout / 10, self.election_timeout / 5)
        min_t = self.election_timeout
        max_t = 2 * self.election_timeout
        return {
            "appendEntriesPeriod": period,
            "raftMinTimeout": min_t,
            "raftMaxTimeout": max_t,
            "connectionTimeout": max(self.network_timeout, max_t),
            "connectionRetryTime": min(1.0, self.network_timeout),
            "leaderFallbackTimeout": max(self.leader_lease_timeout, 2 * self.election_timeout),
            "logCompactionMinEntries": self.compaction_min_entries,
            "logCompactionMinTime": max(self.snapshot_interval, 1.0),
        }
