"""``service.json`` as a whole: which components are present, load (+ ``CLUSTER_*`` env), validate, save.

Presence matters (spec §7.1): the REST API, pinning-service API, proxy and the disk/tags/pinqueue informers are
started only when their section is in the file, and the consensus is chosen by which section exists. A
component missing from the file gets defaults and is reported by :meth:`ServiceConfig.is_loaded` as absent.
Saving writes exactly the present components, so a user's deliberate omission survives a rewrite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from pincluster.config.schema import Section, apply_env, decode_section, encode_section
from pincluster.config.secret import generate_secret
from pincluster.config.sections import (
    DATASTORES,
    BalancedAllocatorConfig,
    ClusterConfig,
    CrdtConfig,
    DatastoreConfig,
    DiskInformerConfig,
    IPFSHTTPConfig,
    IPFSProxyConfig,
    MetricsConfig,
    PinQueueInformerConfig,
    PinSvcAPIConfig,
    PubsubMonConfig,
    RaftConfig,
    RestAPIConfig,
    StatelessTrackerConfig,
    TagsInformerConfig,
    TracingConfig,
)
from pincluster.errors import ConfigError

log = logging.getLogger("pincluster.config")

SERVICE_JSON = "service.json"
DEFAULT_CONFIG_DIR = "~/.ipfs-cluster"

#: Top-level keys in the order Go writes them (``state`` is unused and never written).
TOP_LEVEL_ORDER = (
    "source",
    "cluster",
    "consensus",
    "api",
    "ipfs_connector",
    "state",
    "pin_tracker",
    "monitor",
    "allocator",
    "informer",
    "observations",
    "datastore",
)

#: Every typed component, by its ``section.component`` name (``cluster`` has no parent section).
COMPONENTS: dict[str, type[Section]] = {
    "cluster": ClusterConfig,
    "consensus.raft": RaftConfig,
    "consensus.crdt": CrdtConfig,
    "api.ipfsproxy": IPFSProxyConfig,
    "api.pinsvcapi": PinSvcAPIConfig,
    "api.restapi": RestAPIConfig,
    "ipfs_connector.ipfshttp": IPFSHTTPConfig,
    "pin_tracker.stateless": StatelessTrackerConfig,
    "monitor.pubsubmon": PubsubMonConfig,
    "allocator.balanced": BalancedAllocatorConfig,
    "informer.disk": DiskInformerConfig,
    "informer.pinqueue": PinQueueInformerConfig,
    "informer.tags": TagsInformerConfig,
    "observations.metrics": MetricsConfig,
    "observations.tracing": TracingConfig,
}

#: What ``init`` writes besides the chosen consensus (spec §7.2).
INIT_COMPONENTS = tuple(n for n in COMPONENTS if not n.startswith("consensus."))

#: Consensus implementations pincluster can run today.
SUPPORTED_CONSENSUS = ("raft",)


def _attr(name: str) -> str:
    return name.rpartition(".")[2]


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """The whole of service.json, typed. Read components as attributes: ``cfg.cluster.secret``, ``cfg.raft``."""

    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)
    raft: RaftConfig = dataclasses.field(default_factory=RaftConfig)
    crdt: CrdtConfig = dataclasses.field(default_factory=CrdtConfig)
    ipfsproxy: IPFSProxyConfig = dataclasses.field(default_factory=IPFSProxyConfig)
    pinsvcapi: PinSvcAPIConfig = dataclasses.field(default_factory=PinSvcAPIConfig)
    restapi: RestAPIConfig = dataclasses.field(default_factory=RestAPIConfig)
    ipfshttp: IPFSHTTPConfig = dataclasses.field(default_factory=IPFSHTTPConfig)
    stateless: StatelessTrackerConfig = dataclasses.field(default_factory=StatelessTrackerConfig)
    pubsubmon: PubsubMonConfig = dataclasses.field(default_factory=PubsubMonConfig)
    balanced: BalancedAllocatorConfig = dataclasses.field(default_factory=BalancedAllocatorConfig)
    disk: DiskInformerConfig = dataclasses.field(default_factory=DiskInformerConfig)
    pinqueue: PinQueueInformerConfig = dataclasses.field(default_factory=PinQueueInformerConfig)
    tags: TagsInformerConfig = dataclasses.field(default_factory=TagsInformerConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    tracing: TracingConfig = dataclasses.field(default_factory=TracingConfig)
    #: ``datastore.*`` sections (CRDT only), kept verbatim.
    datastores: Mapping[str, DatastoreConfig] = dataclasses.field(default_factory=dict)
    #: ``section.component`` names present in the file (or chosen at init); these are written on save.
    present: frozenset[str] = frozenset()
    #: ``{"source": url}`` configs: where the config was fetched from (written back instead of the content).
    source: str | None = None
    #: The config folder, for paths relative to it (``raft/``, ``peerstore``, log files).
    folder: Path | None = None

    # -- presence -----------------------------------------------------------------------------

    def is_loaded(self, name: str) -> bool:
        """Whether ``name`` (``"api.restapi"``, ``"informer.disk"``, ``"datastore.pebble"``…) is in the file."""
        return name in self.present

    def component(self, name: str) -> Section:
        """The typed section for ``section.component``."""
        if name not in COMPONENTS:
            raise KeyError(name)
        return cast(Section, getattr(self, _attr(name)))

    def consensus(self) -> str:
        """``"raft"`` or ``"crdt"``: exactly one consensus section must be present (as in Go)."""
        found = [n for n in ("raft", "crdt") if self.is_loaded(f"consensus.{n}")]
        if len(found) != 1:
            raise ConfigError(
                "consensus",
                "could not determine the consensus component: service.json must contain exactly one of "
                "consensus.raft or consensus.crdt",
            )
        return found[0]

    def require_supported_consensus(self) -> str:
        """The consensus to run, refusing the ones pincluster does not implement (crdt) with what to do."""
        name = self.consensus()
        if name not in SUPPORTED_CONSENSUS:
            raise ConfigError(
                f"consensus.{name}",
                f"{name} consensus is not supported by pincluster yet; this peer needs a consensus.raft "
                "section (run 'ipfs-cluster-service init --consensus raft' in a new folder; to bring an IPFS "
                "Cluster pinset over, export it there with IPFS Cluster's `ipfs-cluster-service state export` "
                "and import it into the new folder with `ipfs-cluster-service state import`)",
            )
        return name

    def datastore(self) -> DatastoreConfig:
        """The one ``datastore.*`` section (needed by CRDT only)."""
        if len(self.datastores) != 1:
            raise ConfigError("datastore", "could not determine the datastore: expected exactly one section")
        return next(iter(self.datastores.values()))

    # -- paths --------------------------------------------------------------------------------

    def path(self, relative: str) -> Path:
        """A path relative to the config folder (absolute paths are returned as they are)."""
        p = Path(relative).expanduser()
        if p.is_absolute() or self.folder is None:
            return p
        return self.folder / p

    def raft_data_path(self) -> Path:
        return self.path(self.raft.data_folder or "raft")

    def peerstore_path(self) -> Path:
        return self.path(self.cluster.peerstore_file or "peerstore")

    # -- changes ------------------------------------------------------------------------------

    def replace(self, **changes: Any) -> ServiceConfig:
        """A copy with some attributes changed (sections are immutable)."""
        return dataclasses.replace(self, **changes)

    def with_component(self, name: str, value: Section) -> ServiceConfig:
        """A copy where ``name`` is set to ``value`` and marked present."""
        changes: dict[str, Any] = {_attr(name): value, "present": self.present | {name}}
        return dataclasses.replace(self, **changes)

    # -- validation, env ----------------------------------------------------------------------

    def validate(self) -> None:
        """Validate every component (defaults included); the first error wins, naming its key."""
        for name in COMPONENTS:
            self.component(name).validate()
        for name in self.datastores:
            if name not in DATASTORES:
                raise ConfigError(f"datastore.{name}", f"unknown datastore; use one of {', '.join(DATASTORES)}")

    def apply_env(self, environ: Mapping[str, str] | None = None) -> ServiceConfig:
        """Apply ``CLUSTER_*`` overrides (spec §7.4) to every component."""
        env = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for name, cls in COMPONENTS.items():
            cur = self.component(name)
            new = apply_env(cur, cls.ENV_PREFIX, env, cls.COMPONENT)
            if new is not cur:
                changes[_attr(name)] = new
        datastores = dict(self.datastores)
        for ds_name, ds in self.datastores.items():
            var = f"CLUSTER_{ds_name.upper()}_FOLDER"
            if var in env:
                datastores[ds_name] = DatastoreConfig(ds_name, {**ds.raw, "folder": env[var]})
        return dataclasses.replace(self, **changes, datastores=datastores)

    # -- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON object as written: present components only, Go's key order."""
        if self.source:
            return {"source": self.source}
        out: dict[str, Any] = {}
        grouped: dict[str, dict[str, Any]] = {}
        for name in sorted(self.present):
            if name == "cluster" or name.startswith("datastore."):
                continue
            section, _, comp = name.partition(".")
            grouped.setdefault(section, {})[comp] = encode_section(self.component(name))
        for key in TOP_LEVEL_ORDER:
            if key == "cluster":  # Go always writes the cluster section
                out["cluster"] = encode_section(self.cluster)
            elif key == "datastore" and self.datastores:
                out["datastore"] = {n: dict(self.datastores[n].raw) for n in sorted(self.datastores)}
            elif key in grouped:
                out[key] = grouped[key]
        return out

    def to_json(self) -> str:
        """2-space indented JSON, as ``json.MarshalIndent(cfg, "", "  ")`` writes it."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def save(self, path: Path | str | None = None) -> Path:
        """Write service.json atomically (mode 0600; the folder is created 0700)."""
        target = Path(path) if path is not None else self._default_path()
        write_private_file(target, self.to_json())
        return target

    def _default_path(self) -> Path:
        if self.folder is None:
            raise ConfigError("config", "no config folder is known; pass the path of service.json")
        return self.folder / SERVICE_JSON


def default_config(
    consensus: str = "raft",
    folder: Path | str | None = None,
    secret: bytes | None = None,
) -> ServiceConfig:
    """What ``init`` writes: every component with defaults, a fresh secret, the chosen consensus."""
    if consensus not in ("raft", "crdt"):
        raise ConfigError("consensus", "flag value must be set to 'raft' or 'crdt'")
    cfg = ServiceConfig(
        cluster=ClusterConfig(secret=generate_secret() if secret is None else secret),
        present=frozenset({*INIT_COMPONENTS, f"consensus.{consensus}"}),
        folder=Path(folder) if folder is not None else None,
    )
    if consensus == "crdt":
        cfg = cfg.replace(
            datastores={"pebble": DatastoreConfig("pebble", {})}, present=cfg.present | {"datastore.pebble"}
        )
    return cfg


def parse_config(
    raw: Mapping[str, Any],
    folder: Path | None = None,
    environ: Mapping[str, str] | None = None,
    fetch: Callable[[str], bytes] | None = None,
) -> ServiceConfig:
    """Build a ``ServiceConfig`` from a decoded service.json object, apply env, validate."""
    if not isinstance(raw, Mapping):
        raise ConfigError("service.json", "must contain a JSON object")
    source = raw.get("source")
    if source:
        if not isinstance(source, str):
            raise ConfigError("source", "must be a URL string")
        body = (fetch or fetch_url)(source)
        fetched = _decode_json(body, f"source {source}")
        if isinstance(fetched, Mapping) and fetched.get("source"):
            raise ConfigError("source", "a sourced configuration cannot point to another source")
        cfg = parse_config(fetched, folder, environ, fetch)
        return cfg.replace(source=source)

    base = ServiceConfig(folder=folder)
    changes: dict[str, Any] = {}
    present: set[str] = set()
    for name, cls in COMPONENTS.items():
        if name == "cluster":
            value = raw.get("cluster")
        else:
            section, _, comp = name.partition(".")
            parent = raw.get(section)
            if parent is not None and not isinstance(parent, Mapping):
                raise ConfigError(section, "must be a JSON object")
            value = parent.get(comp) if parent else None
        if value is None:
            continue
        present.add(name)
        changes[_attr(name)] = decode_section(cls, value, cls(), cls.COMPONENT)

    datastores: dict[str, DatastoreConfig] = {}
    ds_section = raw.get("datastore")
    if isinstance(ds_section, Mapping):
        for ds_name, ds_raw in ds_section.items():
            if ds_name in DATASTORES and isinstance(ds_raw, Mapping):
                datastores[ds_name] = DatastoreConfig(ds_name, dict(ds_raw))
                present.add(f"datastore.{ds_name}")

    if "allocator.balanced" not in present:
        # Go: without the section, allocation uses free space only (spec §7.1).
        changes["balanced"] = BalancedAllocatorConfig(allocate_by=("freespace",))

    cfg = dataclasses.replace(base, **changes, datastores=datastores, present=frozenset(present))
    cfg = cfg.apply_env(environ)
    cfg.validate()
    if not cfg.cluster.secret:
        log.warning("Cluster secret is empty, cluster will start on unprotected network.")
    return cfg


def _decode_json(data: bytes | str, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(what, f"is not valid JSON: {err}")


def fetch_url(url: str, timeout: float = 30.0) -> bytes:
    """GET a remote configuration (``{"source": url}``); errors say which URL failed."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError("source", f"{url!r} is not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return cast(bytes, resp.read())
    except (urllib.error.URLError, OSError) as err:
        raise ConfigError("source", f"could not fetch {url}: {err}")


def load_config(
    folder: Path | str,
    environ: Mapping[str, str] | None = None,
    fetch: Callable[[str], bytes] | None = None,
) -> ServiceConfig:
    """Load ``<folder>/service.json`` (+ env), validated. Missing file → ``ConfigError`` saying to run init."""
    folder = Path(folder).expanduser()
    path = folder / SERVICE_JSON
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            str(path), "does not exist; run 'ipfs-cluster-service init' first (or pass --config <folder>)"
        )
    except OSError as err:
        raise ConfigError(str(path), f"cannot be read: {err}")
    return parse_config(_decode_json(data, str(path)), folder, environ, fetch)


def write_private_file(path: Path, text: str, mode: int = 0o600) -> None:
    """Atomically write ``text`` to ``path`` with ``mode``; a new parent folder is created with 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def iter_components(cfg: ServiceConfig) -> Iterator[tuple[str, Section]]:
    """Present components with their typed sections (for diagnostics)."""
    for name in COMPONENTS:
        if cfg.is_loaded(name):
            yield name, cfg.component(name)
