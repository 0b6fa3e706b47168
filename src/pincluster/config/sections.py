# ruff: noqa: RUF009  (opt()/sub() return dataclasses.field objects, which ruff cannot see)
"""Typed sections of service.json (spec §7.2, §7.3): every key, its default, parsing style and write order.

Components receive these frozen objects and read plain Python values: durations are ``timedelta``, addresses
are ``Multiaddr``, the secret is ``bytes``. Field order is the order Go writes the keys.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from pincluster.config.schema import (
    BOOL,
    DURATION,
    FLOAT,
    HEADER_MAP,
    INT,
    MULTIADDR,
    MULTIADDR_LIST,
    MULTIADDRS,
    NULLABLE_STR_MAP,
    PEER_IDS,
    SECRET,
    STR,
    STR_LIST,
    STR_MAP,
    Omit,
    Section,
    Style,
    opt,
    sub,
)
from pincluster.errors import ConfigError, InvalidInput
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

L = Style.LITERAL
R = Style.REQUIRED


def _s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def _ma(*texts: str) -> tuple[Multiaddr, ...]:
    return tuple(Multiaddr(t) for t in texts)


def _positive(key: str, value: timedelta | int, allow_zero: bool = False) -> None:
    zero: Any = timedelta(0) if isinstance(value, timedelta) else 0
    if value < zero or (value == zero and not allow_zero):
        raise ConfigError(key, "is invalid: it must be " + ("0 or more" if allow_zero else "greater than 0"))


# --------------------------------------------------------------------------------------------- cluster


@dataclass(frozen=True)
class ConnectionManager(Section):
    high_water: int = opt(400, INT)
    low_water: int = opt(100, INT)
    grace_period: timedelta = opt(_s(120), DURATION)


@dataclass(frozen=True)
class ResourceManager(Section):
    enabled: bool = opt(True, BOOL, style=L)
    memory_limit_bytes: int = opt(0, INT)
    file_descriptors_limit: int = opt(0, INT)


@dataclass(frozen=True)
class PubSub(Section):
    seen_messages_ttl: timedelta = opt(_s(1800), DURATION)
    heartbeat_interval: timedelta = opt(_s(10), DURATION)
    d_factor: int = opt(4, INT)
    history_gossip: int = opt(2, INT)
    history_length: int = opt(6, INT)
    flood_publish: bool = opt(False, BOOL, style=L)


DEFAULT_CLUSTER_LISTEN = ("/ip4/0.0.0.0/tcp/9096", "/ip4/0.0.0.0/udp/9096/quic")


@dataclass(frozen=True)
class ClusterConfig(Section):
    """``cluster``: peer-wide options. ``id``/``private_key`` are the pre-0.11 in-file identity (legacy)."""

    SECTION: ClassVar[str] = ""
    COMPONENT: ClassVar[str] = "cluster"
    ENV_PREFIX: ClassVar[str] = "CLUSTER"

    id: str = opt("", STR, omit=Omit.EMPTY, env="")  # CLUSTER_ID belongs to identity.json
    peername: str = opt(factory=socket.gethostname, codec=STR)
    private_key: str = opt("", STR, omit=Omit.EMPTY, env="")
    secret: bytes = opt(b"", SECRET, style=L)
    leave_on_shutdown: bool = opt(False, BOOL, style=L)
    listen_multiaddress: tuple[Multiaddr, ...] = opt(
        factory=lambda: _ma(*DEFAULT_CLUSTER_LISTEN), codec=MULTIADDRS, style=R
    )
    announce_multiaddress: tuple[Multiaddr, ...] = opt((), MULTIADDRS, style=L)
    no_announce_multiaddress: tuple[Multiaddr, ...] = opt((), MULTIADDRS, style=L)
    enable_relay_hop: bool = opt(True, BOOL, style=L)
    connection_manager: ConnectionManager = sub(ConnectionManager)
    resource_manager: ResourceManager = sub(ResourceManager)
    pubsub: PubSub = sub(PubSub)
    dial_peer_timeout: timedelta = opt(_s(3), DURATION)
    state_sync_interval: timedelta = opt(_s(300), DURATION)
    pin_recover_interval: timedelta = opt(_s(720), DURATION)
    replication_factor_min: int = opt(-1, INT)
    replication_factor_max: int = opt(-1, INT)
    monitor_ping_interval: timedelta = opt(_s(15), DURATION)
    peer_watch_interval: timedelta = opt(_s(5), DURATION)
    mdns_interval: timedelta = opt(_s(10), DURATION)
    pin_only_on_trusted_peers: bool = opt(False, BOOL, style=L)
    pin_only_on_untrusted_peers: bool = opt(False, BOOL, style=L)
    disable_repinning: bool = opt(True, BOOL, style=L)
    follower_mode: bool = opt(False, BOOL, style=L, omit=Omit.EMPTY)
    peerstore_file: str = opt("", STR, omit=Omit.EMPTY)
    peer_addresses: tuple[Multiaddr, ...] = opt((), MULTIADDR_LIST, style=L)

    def validate(self) -> None:
        if not self.listen_multiaddress:
            raise ConfigError("cluster.listen_multiaddress", "is empty; give at least one address")
        cm = self.connection_manager
        _positive("cluster.connection_manager.low_water", cm.low_water)
        _positive("cluster.connection_manager.high_water", cm.high_water)
        if cm.low_water > cm.high_water:
            raise ConfigError("cluster.connection_manager.low_water", "is greater than high_water")
        _positive("cluster.connection_manager.grace_period", cm.grace_period)
        if self.resource_manager.memory_limit_bytes < 0:
            raise ConfigError("cluster.resource_manager.memory_limit_bytes", "is invalid: must be 0 or more")
        if self.resource_manager.file_descriptors_limit < 0:
            raise ConfigError("cluster.resource_manager.file_descriptors_limit", "is invalid: must be 0 or more")
        _positive("cluster.pubsub.d_factor", self.pubsub.d_factor)
        _positive("cluster.pubsub.seen_messages_ttl", self.pubsub.seen_messages_ttl)
        _positive("cluster.pubsub.heartbeat_interval", self.pubsub.heartbeat_interval)
        _positive("cluster.dial_peer_timeout", self.dial_peer_timeout)
        _positive("cluster.state_sync_interval", self.state_sync_interval)
        _positive("cluster.pin_recover_interval", self.pin_recover_interval)
        _positive("cluster.monitor_ping_interval", self.monitor_ping_interval)
        _positive("cluster.peer_watch_interval", self.peer_watch_interval)
        _positive("cluster.mdns_interval", self.mdns_interval, allow_zero=True)
        validate_replication("cluster", self.replication_factor_min, self.replication_factor_max)
        if self.pin_only_on_trusted_peers and self.pin_only_on_untrusted_peers:
            raise ConfigError(
                "cluster.pin_only_on_trusted_peers",
                "and pin_only_on_untrusted_peers cannot both be true",
            )
        for i, addr in enumerate(self.peer_addresses):
            if addr.peer_id is None:
                raise ConfigError(f"cluster.peer_addresses[{i}]", f"{addr} has no /p2p/<peer id> part")
        if self.peerstore_file and ("/" in self.peerstore_file or self.peerstore_file in (".", "..")):
            raise ConfigError("cluster.peerstore_file", "must be a file name inside the config folder")


def validate_replication(prefix: str, rmin: int, rmax: int) -> None:
    """The replication factor rules shared by the config and per-pin options (spec §3.5)."""
    if rmin == 0 or rmax == 0:
        raise ConfigError(f"{prefix}.replication_factor_min", "and max must be set (0 is not a valid factor)")
    if rmin > rmax and rmax != -1:
        raise ConfigError(f"{prefix}.replication_factor_min", "is larger than max")
    if rmin < -1:
        raise ConfigError(f"{prefix}.replication_factor_min", "is wrong: must be -1 or a positive number")
    if rmax < -1:
        raise ConfigError(f"{prefix}.replication_factor_max", "is wrong: must be -1 or a positive number")
    if (rmin == -1) != (rmax == -1):
        raise ConfigError(f"{prefix}.replication_factor_min", "and max must be -1 when one of them is")


# --------------------------------------------------------------------------------------------- consensus


@dataclass(frozen=True)
class RaftConfig(Section):
    """``consensus.raft``: Go's hashicorp-raft knobs; pincluster maps them onto PySyncObj."""

    SECTION: ClassVar[str] = "consensus"
    COMPONENT: ClassVar[str] = "raft"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_RAFT"

    data_folder: str = opt("", STR, omit=Omit.EMPTY)
    init_peerset: tuple[PeerID, ...] = opt((), PEER_IDS, style=L)
    wait_for_leader_timeout: timedelta = opt(_s(15), DURATION)
    network_timeout: timedelta = opt(_s(10), DURATION)
    commit_retries: int = opt(1, INT, style=L)
    commit_retry_delay: timedelta = opt(_s(0.2), DURATION)
    backups_rotate: int = opt(6, INT)
    datastore_namespace: str = opt("/r", STR, omit=Omit.DEFAULT)
    heartbeat_timeout: timedelta = opt(_s(1), DURATION)
    election_timeout: timedelta = opt(_s(1), DURATION)
    commit_timeout: timedelta = opt(_s(0.05), DURATION)
    max_append_entries: int = opt(64, INT)
    trailing_logs: int = opt(10240, INT)
    snapshot_interval: timedelta = opt(_s(120), DURATION)
    snapshot_threshold: int = opt(8192, INT)
    leader_lease_timeout: timedelta = opt(_s(0.5), DURATION)
    # pincluster extensions. Go's Raft runs over the cluster's libp2p host; PySyncObj has its own transport,
    # which listens here (docs/consensus.md), and compacts its log after this many entries, or this many bytes
    # of them (it holds the journal in memory).
    listen_multiaddress: Multiaddr = opt(factory=lambda: Multiaddr("/ip4/0.0.0.0/tcp/9098"), codec=MULTIADDR)
    compaction_min_entries: int = opt(100_000, INT)
    compaction_max_bytes: int = opt(16 * 1024 * 1024, INT, omit=Omit.DEFAULT)

    def validate(self) -> None:
        _positive("raft.wait_for_leader_timeout", self.wait_for_leader_timeout)
        if self.compaction_min_entries < 2:
            raise ConfigError("raft.compaction_min_entries", "is too low: must be at least 2")
        _positive("raft.compaction_max_bytes", self.compaction_max_bytes)
        try:
            self.listen_multiaddress.tcp_host_port()
        except InvalidInput as err:
            raise ConfigError("raft.listen_multiaddress", str(err)) from None
        _positive("raft.network_timeout", self.network_timeout)
        _positive("raft.commit_retries", self.commit_retries, allow_zero=True)
        _positive("raft.commit_retry_delay", self.commit_retry_delay)
        _positive("raft.backups_rotate", self.backups_rotate)
        ms5 = timedelta(milliseconds=5)
        for name in ("heartbeat_timeout", "election_timeout", "snapshot_interval", "leader_lease_timeout"):
            if getattr(self, name) < ms5:
                raise ConfigError(f"raft.{name}", "is too low: must be at least 5ms")
        if self.commit_timeout < timedelta(milliseconds=1):
            raise ConfigError("raft.commit_timeout", "is too low: must be at least 1ms")
        if not 0 < self.max_append_entries <= 1024:
            raise ConfigError("raft.max_append_entries", "is invalid: must be between 1 and 1024")
        _positive("raft.trailing_logs", self.trailing_logs, allow_zero=True)
        _positive("raft.snapshot_threshold", self.snapshot_threshold)
        if self.leader_lease_timeout > self.heartbeat_timeout:
            raise ConfigError("raft.leader_lease_timeout", "cannot be larger than heartbeat_timeout")
        if self.election_timeout < self.heartbeat_timeout:
            raise ConfigError("raft.election_timeout", "must be equal or greater than heartbeat_timeout")
        # A PySyncObj (not Go) rule: its ticks and its Python threads need an election timeout of 100 ms or more.
        # (commit_timeout bounds nothing here: entries go out at the end of each Raft tick.)
        if self.election_timeout < timedelta(milliseconds=100):
            raise ConfigError("raft.election_timeout", "is too low: must be at least 100ms")


@dataclass(frozen=True)
class CrdtBatching(Section):
    max_batch_size: int = opt(0, INT, style=L)
    max_batch_age: timedelta = opt(_s(0), DURATION)
    max_queue_size: int = opt(50000, INT, omit=Omit.DEFAULT)


@dataclass(frozen=True)
class CrdtConfig(Section):
    """``consensus.crdt``: loaded and preserved; pincluster's daemon does not run CRDT consensus yet."""

    SECTION: ClassVar[str] = "consensus"
    COMPONENT: ClassVar[str] = "crdt"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_CRDT"

    cluster_name: str = opt("ipfs-cluster", STR)
    trusted_peers: tuple[str, ...] = opt(("*",), STR_LIST, style=L)
    batching: CrdtBatching = sub(CrdtBatching)
    repair_interval: timedelta = opt(_s(3600), DURATION)
    rebroadcast_interval: timedelta = opt(_s(60), DURATION, omit=Omit.DEFAULT)
    peerset_metric: str = opt("ping", STR, omit=Omit.DEFAULT)
    datastore_namespace: str = opt("/c", STR, omit=Omit.DEFAULT)

    def validate(self) -> None:
        if not self.cluster_name:
            raise ConfigError("crdt.cluster_name", "is empty")
        _positive("crdt.rebroadcast_interval", self.rebroadcast_interval)
        _positive("crdt.repair_interval", self.repair_interval, allow_zero=True)
        _positive("crdt.batching.max_batch_size", self.batching.max_batch_size, allow_zero=True)
        _positive("crdt.batching.max_batch_age", self.batching.max_batch_age, allow_zero=True)
        _positive("crdt.batching.max_queue_size", self.batching.max_queue_size)
        for i, p in enumerate(self.trusted_peers):
            if p != "*":
                try:
                    PeerID.decode(p)
                except ValueError as err:
                    raise ConfigError(f"crdt.trusted_peers[{i}]", str(err))


# --------------------------------------------------------------------------------------------- APIs

_CORS_EXPOSED = ("Content-Type", "X-Stream-Output", "X-Chunked-Output", "X-Content-Length")


def _validate_http_api(name: str, cfg: RestAPIConfig | PinSvcAPIConfig) -> None:
    if not cfg.http_listen_multiaddress and not cfg.libp2p_listen_multiaddress:
        raise ConfigError(f"{name}.http_listen_multiaddress", "is empty and no libp2p listener is set")
    if bool(cfg.ssl_cert_file) != bool(cfg.ssl_key_file):
        missing = "ssl_key_file" if cfg.ssl_cert_file else "ssl_cert_file"
        raise ConfigError(f"{name}.{missing}", "is missing: set both ssl_cert_file and ssl_key_file, or neither")
    for t in ("read_timeout", "read_header_timeout", "write_timeout", "idle_timeout", "cors_max_age",
              "token_lifetime"):
        _positive(f"{name}.{t}", getattr(cfg, t), allow_zero=True)
    _positive(f"{name}.max_header_bytes", cfg.max_header_bytes)
    if cfg.basic_auth_credentials is not None and not cfg.basic_auth_credentials:
        raise ConfigError(f"{name}.basic_auth_credentials", "is empty: use null to disable authentication")
    if cfg.id:
        try:
            PeerID.decode(cfg.id)
        except ValueError as err:
            raise ConfigError(f"{name}.id", str(err))


@dataclass(frozen=True)
class _HTTPAPIBase(Section):
    http_listen_multiaddress: tuple[Multiaddr, ...] = opt(
        factory=lambda: _ma("/ip4/127.0.0.1/tcp/9094"), codec=MULTIADDRS
    )
    ssl_cert_file: str = opt("", STR, omit=Omit.EMPTY)
    ssl_key_file: str = opt("", STR, omit=Omit.EMPTY)
    read_timeout: timedelta = opt(_s(0), DURATION)
    read_header_timeout: timedelta = opt(_s(5), DURATION)
    write_timeout: timedelta = opt(_s(0), DURATION)
    idle_timeout: timedelta = opt(_s(120), DURATION)
    max_header_bytes: int = opt(4096, INT)
    libp2p_listen_multiaddress: tuple[Multiaddr, ...] = opt((), MULTIADDRS, style=L, omit=Omit.EMPTY)
    id: str = opt("", STR, omit=Omit.EMPTY)
    private_key: str = opt("", STR, omit=Omit.EMPTY)
    basic_auth_credentials: Mapping[str, str] | None = opt(None, NULLABLE_STR_MAP, style=L)
    http_log_file: str = opt("", STR, style=L)
    headers: Mapping[str, tuple[str, ...]] = opt(factory=dict, codec=HEADER_MAP, style=L)
    cors_allowed_origins: tuple[str, ...] = opt(("*",), STR_LIST, style=L)
    cors_allowed_methods: tuple[str, ...] = opt(("GET",), STR_LIST, style=L)
    cors_allowed_headers: tuple[str, ...] = opt((), STR_LIST, style=L)
    cors_exposed_headers: tuple[str, ...] = opt(_CORS_EXPOSED, STR_LIST, style=L)
    cors_allow_credentials: bool = opt(True, BOOL, style=L)
    cors_max_age: timedelta = opt(_s(0), DURATION)
    #: Not a Go key: lifetime of the JWTs that ``POST /token`` issues ("0s" = never expire, as Go's).
    token_lifetime: timedelta = opt(_s(86400), DURATION, omit=Omit.DEFAULT)


@dataclass(frozen=True)
class RestAPIConfig(_HTTPAPIBase):
    """``api.restapi``: the REST API (started only when the section is present)."""

    SECTION: ClassVar[str] = "api"
    COMPONENT: ClassVar[str] = "restapi"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_RESTAPI"

    def validate(self) -> None:
        _validate_http_api("restapi", self)


@dataclass(frozen=True)
class PinSvcAPIConfig(_HTTPAPIBase):
    """``api.pinsvcapi``: the Pinning Service API (started only when present)."""

    SECTION: ClassVar[str] = "api"
    COMPONENT: ClassVar[str] = "pinsvcapi"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_PINSVCAPI"

    http_listen_multiaddress: tuple[Multiaddr, ...] = opt(
        factory=lambda: _ma("/ip4/127.0.0.1/tcp/9097"), codec=MULTIADDRS
    )

    def validate(self) -> None:
        _validate_http_api("pinsvcapi", self)


@dataclass(frozen=True)
class IPFSProxyConfig(Section):
    """``api.ipfsproxy``: the kubo-compatible proxy (started only when present)."""

    SECTION: ClassVar[str] = "api"
    COMPONENT: ClassVar[str] = "ipfsproxy"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_IPFSPROXY"

    listen_multiaddress: tuple[Multiaddr, ...] = opt(factory=lambda: _ma("/ip4/127.0.0.1/tcp/9095"), codec=MULTIADDRS)
    node_multiaddress: Multiaddr = opt(factory=lambda: Multiaddr("/ip4/127.0.0.1/tcp/5001"), codec=MULTIADDR)
    node_https: bool = opt(False, BOOL, style=L, omit=Omit.EMPTY)
    log_file: str = opt("", STR, style=L)
    read_timeout: timedelta = opt(_s(0), DURATION)
    read_header_timeout: timedelta = opt(_s(5), DURATION)
    write_timeout: timedelta = opt(_s(0), DURATION)
    idle_timeout: timedelta = opt(_s(60), DURATION)
    max_header_bytes: int = opt(4096, INT)
    extract_headers_extra: tuple[str, ...] = opt((), STR_LIST, style=L, omit=Omit.EMPTY)
    extract_headers_path: str = opt("/api/v0/version", STR, omit=Omit.DEFAULT)
    extract_headers_ttl: timedelta = opt(_s(300), DURATION, omit=Omit.DEFAULT)

    def validate(self) -> None:
        if not self.listen_multiaddress:
            raise ConfigError("ipfsproxy.listen_multiaddress", "is empty")
        for t in (
            "read_timeout",
            "read_header_timeout",
            "write_timeout",
            "idle_timeout",
            "extract_headers_ttl",
        ):
            _positive(f"ipfsproxy.{t}", getattr(self, t), allow_zero=True)
        _positive("ipfsproxy.max_header_bytes", self.max_header_bytes)
        if not self.extract_headers_path.startswith("/"):
            raise ConfigError("ipfsproxy.extract_headers_path", "must start with /")


# --------------------------------------------------------------------------------------------- the rest


@dataclass(frozen=True)
class IPFSHTTPConfig(Section):
    """``ipfs_connector.ipfshttp``: how the cluster reaches its IPFS node's RPC API."""

    SECTION: ClassVar[str] = "ipfs_connector"
    COMPONENT: ClassVar[str] = "ipfshttp"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_IPFSHTTP"

    node_multiaddress: Multiaddr = opt(factory=lambda: Multiaddr("/ip4/127.0.0.1/tcp/5001"), codec=MULTIADDR, style=R)
    connect_swarms_delay: timedelta = opt(_s(30), DURATION)
    ipfs_request_timeout: timedelta = opt(_s(300), DURATION)
    pin_timeout: timedelta = opt(_s(120), DURATION)
    unpin_timeout: timedelta = opt(_s(3 * 3600), DURATION)
    repogc_timeout: timedelta = opt(_s(24 * 3600), DURATION)
    informer_trigger_interval: int = opt(0, INT, style=L)
    unpin_disable: bool = opt(False, BOOL, style=L, omit=Omit.EMPTY)

    def validate(self) -> None:
        _positive("ipfshttp.connect_swarms_delay", self.connect_swarms_delay, allow_zero=True)
        for t in ("ipfs_request_timeout", "pin_timeout", "unpin_timeout", "repogc_timeout"):
            _positive(f"ipfshttp.{t}", getattr(self, t), allow_zero=True)
        _positive("ipfshttp.informer_trigger_interval", self.informer_trigger_interval, allow_zero=True)


@dataclass(frozen=True)
class StatelessTrackerConfig(Section):
    SECTION: ClassVar[str] = "pin_tracker"
    COMPONENT: ClassVar[str] = "stateless"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_STATELESS"

    max_pin_queue_size: int = opt(1_000_000, INT, omit=Omit.DEFAULT)
    concurrent_pins: int = opt(10, INT)
    priority_pin_max_age: timedelta = opt(_s(24 * 3600), DURATION)
    priority_pin_max_retries: int = opt(5, INT)

    def validate(self) -> None:
        _positive("stateless.max_pin_queue_size", self.max_pin_queue_size)
        _positive("stateless.concurrent_pins", self.concurrent_pins)
        _positive("stateless.priority_pin_max_age", self.priority_pin_max_age)
        _positive("stateless.priority_pin_max_retries", self.priority_pin_max_retries, allow_zero=True)


@dataclass(frozen=True)
class PubsubMonConfig(Section):
    SECTION: ClassVar[str] = "monitor"
    COMPONENT: ClassVar[str] = "pubsubmon"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_PUBSUBMON"

    check_interval: timedelta = opt(_s(15), DURATION, style=R)

    def validate(self) -> None:
        _positive("pubsubmon.check_interval", self.check_interval)


@dataclass(frozen=True)
class BalancedAllocatorConfig(Section):
    SECTION: ClassVar[str] = "allocator"
    COMPONENT: ClassVar[str] = "balanced"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_BALANCED"

    allocate_by: tuple[str, ...] = opt(("tag:group", "freespace"), STR_LIST)

    def validate(self) -> None:
        if not self.allocate_by:
            raise ConfigError("balanced.allocate_by", "is empty: name at least one metric")


@dataclass(frozen=True)
class DiskInformerConfig(Section):
    SECTION: ClassVar[str] = "informer"
    COMPONENT: ClassVar[str] = "disk"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_DISK"

    metric_ttl: timedelta = opt(_s(30), DURATION, style=R)
    metric_type: str = opt("freespace", STR, style=R)

    def validate(self) -> None:
        _positive("disk.metric_ttl", self.metric_ttl)
        if self.metric_type not in ("freespace", "reposize"):
            raise ConfigError("disk.metric_type", f"is {self.metric_type!r}; use 'freespace' or 'reposize'")


@dataclass(frozen=True)
class PinQueueInformerConfig(Section):
    SECTION: ClassVar[str] = "informer"
    COMPONENT: ClassVar[str] = "pinqueue"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_PINQUEUE"

    metric_ttl: timedelta = opt(_s(30), DURATION, style=R)
    weight_bucket_size: int = opt(100_000, INT, style=L)

    def validate(self) -> None:
        _positive("pinqueue.metric_ttl", self.metric_ttl)
        _positive("pinqueue.weight_bucket_size", self.weight_bucket_size, allow_zero=True)


@dataclass(frozen=True)
class TagsInformerConfig(Section):
    SECTION: ClassVar[str] = "informer"
    COMPONENT: ClassVar[str] = "tags"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_TAGS"

    metric_ttl: timedelta = opt(_s(30), DURATION)
    tags: Mapping[str, str] = opt(factory=lambda: {"group": "default"}, codec=STR_MAP, style=L)

    def validate(self) -> None:
        _positive("tags.metric_ttl", self.metric_ttl)


@dataclass(frozen=True)
class MetricsConfig(Section):
    SECTION: ClassVar[str] = "observations"
    COMPONENT: ClassVar[str] = "metrics"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_METRICS"

    enable_stats: bool = opt(False, BOOL, style=L)
    prometheus_endpoint: Multiaddr = opt(factory=lambda: Multiaddr("/ip4/127.0.0.1/tcp/8888"), codec=MULTIADDR, style=R)
    reporting_interval: timedelta = opt(_s(30), DURATION)

    def validate(self) -> None:
        _positive("metrics.reporting_interval", self.reporting_interval)


@dataclass(frozen=True)
class TracingConfig(Section):
    SECTION: ClassVar[str] = "observations"
    COMPONENT: ClassVar[str] = "tracing"
    ENV_PREFIX: ClassVar[str] = "CLUSTER_TRACING"

    enable_tracing: bool = opt(False, BOOL, style=L)
    jaeger_agent_endpoint: Multiaddr = opt(factory=lambda: Multiaddr("/ip4/0.0.0.0/udp/6831"), codec=MULTIADDR, style=R)
    sampling_prob: float = opt(0.3, FLOAT)
    service_name: str = opt("cluster-daemon", STR)
    # pincluster extension: an OTLP/HTTP collector's traces URL (http://127.0.0.1:4318/v1/traces); when set,
    # spans go there instead of to the Jaeger agent (whose UDP protocol OpenTelemetry deprecated).
    otlp_endpoint: str = opt("", STR, omit=Omit.EMPTY)

    def validate(self) -> None:
        if not 0 <= self.sampling_prob <= 1:
            raise ConfigError("tracing.sampling_prob", "must be between 0 and 1")
        if self.otlp_endpoint and not self.otlp_endpoint.startswith(("http://", "https://")):
            raise ConfigError("tracing.otlp_endpoint",
                              f"{self.otlp_endpoint!r}: need an http:// or https:// URL, such as "
                              "http://127.0.0.1:4318/v1/traces")


@dataclass(frozen=True)
class DatastoreConfig:
    """``datastore.<name>`` (CRDT only): kept exactly as written so it is saved back intact.

    pincluster's Raft consensus has no use for it; the section matters only for presence-based selection.
    """

    name: str
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        """The datastore folder, relative to the config folder unless absolute."""
        folder = self.raw.get("folder")
        return folder if isinstance(folder, str) and folder else self.name


DATASTORES = ("badger", "badger3", "leveldb", "pebble")

__all__ = [
    "DATASTORES",
    "BalancedAllocatorConfig",
    "ClusterConfig",
    "ConnectionManager",
    "CrdtBatching",
    "CrdtConfig",
    "DatastoreConfig",
    "DiskInformerConfig",
    "IPFSHTTPConfig",
    "IPFSProxyConfig",
    "MetricsConfig",
    "PinQueueInformerConfig",
    "PinSvcAPIConfig",
    "PubSub",
    "PubsubMonConfig",
    "RaftConfig",
    "ResourceManager",
    "RestAPIConfig",
    "StatelessTrackerConfig",
    "TagsInformerConfig",
    "TracingConfig",
    "validate_replication",
]
