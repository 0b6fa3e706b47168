"""The embedded node's config file: a small subset of kubo's ``config`` JSON.

Keeping kubo's key names (Identity.PeerID, Addresses.API, Bootstrap …) means `config/show` answers with the
shape kubo clients and the cluster connector already read (e.g. ``Datastore/StorageMax``). Unknown keys are
kept on save and ignored, so a hand-edited file survives a round trip.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pincluster.errors import ConfigError, InvalidInput
from pincluster.ipfs.apiguard import auth_header
from pincluster.p2p.keys import PrivateKey
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

CONFIG_FILE = "config"
DEFAULT_API = "/ip4/127.0.0.1/tcp/5001"
DEFAULT_SWARM = "/ip4/0.0.0.0/tcp/4001"
DEFAULT_STORAGE_MAX = "10GB"

_SIZE_UNITS = {
    "": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4,
}


def parse_size(text: str, key: str) -> int:
    """Parse a humanized size like kubo's ``StorageMax`` ("10GB", "512MiB", "1000")."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _SIZE_UNITS:
        raise ConfigError(key, f"{text!r} is not a size (examples: 10GB, 512MiB, 1000000)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])


def parse_duration(text: str, key: str) -> float:
    """Parse a Go-style duration ("30s", "1m30s", "500ms") into seconds."""
    if not text:
        raise ConfigError(key, "empty duration (examples: 30s, 1m, 500ms)")
    total = 0.0
    pos = 0
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ConfigError(key, f"{text!r} is not a duration (examples: 30s, 1m, 500ms)")
    return total


@dataclass
class NodeConfig:
    """The typed view of the config file; ``extra`` keeps keys we do not interpret."""

    private_key: PrivateKey
    api: Multiaddr = field(default_factory=lambda: Multiaddr(DEFAULT_API))
    swarm: list[Multiaddr] = field(default_factory=lambda: [Multiaddr(DEFAULT_SWARM)])
    bootstrap: list[Multiaddr] = field(default_factory=list)
    datastore_path: str = "blocks"
    storage_max: str = DEFAULT_STORAGE_MAX
    swarm_key_path: str = "swarm.key"
    fetch_timeout: str = "30s"
    fetch_concurrency: int = 8
    #: kubo's ``API.HTTPHeaders``: the CORS policy of the RPC API (``Access-Control-Allow-Origin``…) and
    #: headers added to its answers (see ``pincluster.ipfs.apiguard``).
    http_headers: dict[str, list[str]] = field(default_factory=dict)
    #: kubo's ``API.Authorizations``: user → (AuthSecret, AllowedPaths). Any at all, and the RPC API runs only
    #: requests that carry one of their secrets (see ``pincluster.ipfs.apiguard.RpcAuthorizations``).
    authorizations: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def peer_id(self) -> PeerID:
        return self.private_key.public_key().peer_id()

    @property
    def storage_max_bytes(self) -> int:
        return parse_size(self.storage_max, "Datastore.StorageMax")

    @property
    def fetch_timeout_seconds(self) -> float:
        return parse_duration(self.fetch_timeout, "Exchange.FetchTimeout")

    @classmethod
    def generate(cls, **kwargs: Any) -> NodeConfig:
        """A fresh config with a new Ed25519 identity."""
        return cls(private_key=PrivateKey.generate_ed25519(), **kwargs)

    def to_json(self, *, secrets: bool = True) -> dict[str, Any]:
        """The kubo-shaped JSON; ``secrets=False`` drops the private key and empties ``API.Authorizations``, as
        kubo's `config show` does (kubo's `config API.Authorizations` still shows the secrets; ours does not)."""
        doc: dict[str, Any] = copy.deepcopy(self.extra)
        identity: dict[str, Any] = {"PeerID": str(self.peer_id)}
        if secrets:
            identity["PrivKey"] = base64.b64encode(self.private_key.to_protobuf()).decode()
        doc["Identity"] = identity
        addresses = dict(doc.get("Addresses") or {})
        addresses["API"] = str(self.api)
        addresses["Swarm"] = [str(a) for a in self.swarm]
        doc["Addresses"] = addresses
        doc["Bootstrap"] = [str(a) for a in self.bootstrap]
        datastore = dict(doc.get("Datastore") or {})
        datastore["Path"] = self.datastore_path
        datastore["StorageMax"] = self.storage_max
        doc["Datastore"] = datastore
        doc["Swarm"] = {**dict(doc.get("Swarm") or {}), "KeyPath": self.swarm_key_path}
        doc["Exchange"] = {
            **dict(doc.get("Exchange") or {}),
            "FetchTimeout": self.fetch_timeout,
            "FetchConcurrency": self.fetch_concurrency,
        }
        if self.http_headers:
            doc["API"] = {**dict(doc.get("API") or {}), "HTTPHeaders": copy.deepcopy(self.http_headers)}
        if self.authorizations:
            doc["API"] = {**dict(doc.get("API") or {}), "Authorizations": {
                user: {"AuthSecret": secret, "AllowedPaths": list(paths)}
                for user, (secret, paths) in self.authorizations.items()}}
        if not secrets and isinstance(doc.get("API"), dict) and "Authorizations" in doc["API"]:
            doc["API"] = {**doc["API"], "Authorizations": {}}
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> NodeConfig:
        """Validate and load; every error names the key."""
        if not isinstance(doc, dict):
            raise ConfigError("config", "the config file must hold a JSON object")
        ident = _obj(doc, "Identity")
        priv_b64 = ident.get("PrivKey")
        if not isinstance(priv_b64, str) or not priv_b64:
            raise ConfigError("Identity.PrivKey", "missing; run `pincluster-ipfs init` to create an identity")
        try:
            key = PrivateKey.from_protobuf(base64.b64decode(priv_b64, validate=True))
        except (ValueError, InvalidInput) as exc:
            raise ConfigError("Identity.PrivKey", f"not a base64 libp2p private key: {exc}") from None
        pid_text = ident.get("PeerID")
        if pid_text is not None:
            try:
                claimed = PeerID.decode(str(pid_text))
            except InvalidInput as exc:
                raise ConfigError("Identity.PeerID", str(exc)) from None
            if claimed != key.public_key().peer_id():
                raise ConfigError(
                    "Identity.PeerID",
                    f"{claimed} does not match the private key (which gives {key.public_key().peer_id()})",
                )
        addresses = _obj(doc, "Addresses")
        api = _maddr(addresses.get("API", DEFAULT_API), "Addresses.API")
        swarm_raw = addresses.get("Swarm", [DEFAULT_SWARM])
        if isinstance(swarm_raw, str):
            swarm_raw = [swarm_raw]
        if not isinstance(swarm_raw, list):
            raise ConfigError("Addresses.Swarm", "must be a list of multiaddrs")
        swarm = [_maddr(a, "Addresses.Swarm") for a in swarm_raw]
        boot_raw = doc.get("Bootstrap") or []
        if not isinstance(boot_raw, list):
            raise ConfigError("Bootstrap", "must be a list of multiaddrs with /p2p/<peer id>")
        bootstrap = [_maddr(a, "Bootstrap") for a in boot_raw]
        for b in bootstrap:
            if b.peer_id is None:
                raise ConfigError("Bootstrap", f"{b} has no /p2p/<peer id>; bootstrap addresses must name the peer")
        ds = _obj(doc, "Datastore")
        ds_path = ds.get("Path", "blocks")
        if not isinstance(ds_path, str) or not ds_path:
            raise ConfigError("Datastore.Path", "must be a non-empty path")
        storage_max = str(ds.get("StorageMax", DEFAULT_STORAGE_MAX))
        parse_size(storage_max, "Datastore.StorageMax")
        swarm_cfg = _obj(doc, "Swarm")
        key_path = swarm_cfg.get("KeyPath", "swarm.key")
        if not isinstance(key_path, str) or not key_path:
            raise ConfigError("Swarm.KeyPath", "must be a non-empty path")
        ex = _obj(doc, "Exchange")
        fetch_timeout = str(ex.get("FetchTimeout", "30s"))
        parse_duration(fetch_timeout, "Exchange.FetchTimeout")
        conc = ex.get("FetchConcurrency", 8)
        if not isinstance(conc, int) or isinstance(conc, bool) or not 1 <= conc <= 256:
            raise ConfigError("Exchange.FetchConcurrency", f"{conc!r} must be an integer from 1 to 256")
        http_headers = _http_headers(_obj(doc, "API").get("HTTPHeaders"))
        authorizations = _authorizations(_obj(doc, "API").get("Authorizations"))
        extra = {k: v for k, v in doc.items()}
        return cls(
            private_key=key, api=api, swarm=swarm, bootstrap=bootstrap, datastore_path=ds_path,
            storage_max=storage_max, swarm_key_path=key_path, fetch_timeout=fetch_timeout,
            fetch_concurrency=conc, http_headers=http_headers, authorizations=authorizations, extra=extra,
        )

    @classmethod
    def load(cls, repo: Path) -> NodeConfig:
        path = repo / CONFIG_FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigError(
                "config", f"no config at {path}: run `pincluster-ipfs init` (or set --repo/PINCLUSTER_IPFS_PATH)"
            ) from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("config", f"{path} is not valid JSON: {exc}") from None
        return cls.from_json(doc)

    def save(self, repo: Path) -> None:
        """Write atomically with mode 0600 (the file holds the private key)."""
        repo.mkdir(parents=True, exist_ok=True)
        path = repo / CONFIG_FILE
        tmp = path.with_name(CONFIG_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.to_json(), fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def resolve(self, repo: Path, rel: str) -> Path:
        """A config path, relative to the repo unless absolute."""
        p = Path(rel).expanduser()
        return p if p.is_absolute() else repo / p


def _http_headers(value: Any) -> dict[str, list[str]]:
    """``API.HTTPHeaders``: header name to a list of values (kubo's ``map[string][]string``; null is none)."""
    if value is None:
        return {}
    example = '(example: {"Access-Control-Allow-Origin": ["http://localhost:3000"]})'
    if not isinstance(value, dict):
        raise ConfigError("API.HTTPHeaders", f"must be an object of header names to lists of values {example}")
    out: dict[str, list[str]] = {}
    for name, values in value.items():
        if values is None:
            values = []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"API.HTTPHeaders.{name}", f"must be a list of strings {example}")
        out[name] = list(values)
    return out


def _authorizations(value: Any) -> dict[str, tuple[str, list[str]]]:
    """``API.Authorizations``: user → {AuthSecret, AllowedPaths}. kubo ignores a secret of a type it does not
    know, or an empty one, which leaves that user locked out without a word; here such a config is refused."""
    if value is None:
        return {}
    example = '(example: {"alice": {"AuthSecret": "bearer:TOKEN", "AllowedPaths": ["/api/v0"]}})'
    if not isinstance(value, dict):
        raise ConfigError("API.Authorizations", f"must be an object of user names to scopes {example}")
    out: dict[str, tuple[str, list[str]]] = {}
    for user, scope in value.items():
        key = f"API.Authorizations.{user}"
        if not isinstance(scope, dict):
            raise ConfigError(key, f"must be an object with AuthSecret and AllowedPaths {example}")
        secret = scope.get("AuthSecret")
        if not isinstance(secret, str) or not auth_header(secret):
            raise ConfigError(f"{key}.AuthSecret", "must be bearer:TOKEN, basic:USER:PASSWORD, basic:BASE64 or a "
                              f"bare TOKEN, got {secret!r}")
        paths = scope.get("AllowedPaths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ConfigError(f"{key}.AllowedPaths", 'must be a list of RPC path prefixes, such as ["/api/v0"]')
        out[user] = (secret, list(paths))
    return out


def _obj(doc: dict[str, Any], key: str) -> dict[str, Any]:
    val = doc.get(key)
    if val is None:
        return {}
    if not isinstance(val, dict):
        raise ConfigError(key, "must be a JSON object")
    return val


def _maddr(value: Any, key: str) -> Multiaddr:
    if not isinstance(value, str):
        raise ConfigError(key, f"{value!r} is not a multiaddr string")
    try:
        return Multiaddr(value)
    except InvalidInput as exc:
        raise ConfigError(key, str(exc)) from None
