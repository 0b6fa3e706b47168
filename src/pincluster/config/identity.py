"""``identity.json``: the peer's ID and private key (spec §7.5).

Kept apart from service.json so a config can be shared between peers without leaking keys. New identities
are Ed25519; RSA identities written by older IPFS Cluster versions load too. The ID must match the key, so a
hand-edited file cannot make a peer announce an ID it cannot prove.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pincluster.config.service import write_private_file
from pincluster.errors import ConfigError, InvalidInput
from pincluster.p2p.keys import PrivateKey
from pincluster.types.peer import PeerID

IDENTITY_JSON = "identity.json"


@dataclass(frozen=True)
class Identity:
    """A peer identity: the ID and the private key it is derived from."""

    peer_id: PeerID
    private_key: PrivateKey

    @classmethod
    def generate(cls) -> Identity:
        """A new Ed25519 identity (what ``init`` creates)."""
        key = PrivateKey.generate_ed25519()
        return cls(key.public_key().peer_id(), key)

    @classmethod
    def from_strings(cls, peer_id: str, private_key: str, where: str = "identity") -> Identity:
        """Parse the two JSON strings; errors name ``<where>.id`` / ``<where>.private_key``."""
        if not isinstance(peer_id, str) or not peer_id:
            raise ConfigError(f"{where}.id", "is missing: identity.json needs the peer ID")
        if not isinstance(private_key, str) or not private_key:
            raise ConfigError(f"{where}.private_key", "is missing: identity.json needs the private key")
        try:
            pid = PeerID.decode(peer_id)
        except InvalidInput as err:
            raise ConfigError(f"{where}.id", str(err))
        try:
            raw = base64.b64decode(private_key.strip(), validate=True)
        except (binascii.Error, ValueError) as err:
            raise ConfigError(f"{where}.private_key", f"is not valid base64: {err}")
        try:
            key = PrivateKey.from_protobuf(raw)
        except InvalidInput as err:
            raise ConfigError(f"{where}.private_key", f"is not a libp2p private key: {err}")
        if not pid.matches(key.public_key()):
            raise ConfigError(
                f"{where}.id",
                f"identity ID does not match the private_key: {peer_id} is not derived from that key "
                f"(it belongs to {key.public_key().peer_id()})",
            )
        return cls(pid, key)

    def to_dict(self) -> dict[str, str]:
        return {
            "id": str(self.peer_id),
            "private_key": base64.b64encode(self.private_key.to_protobuf()).decode("ascii"),
        }

    def to_json(self) -> str:
        """Go writes identity.json with 4-space indentation."""
        return json.dumps(self.to_dict(), indent=4)

    def save(self, path: Path | str) -> Path:
        """Write atomically with mode 0600."""
        target = Path(path)
        write_private_file(target, self.to_json())
        return target

    def apply_env(self, environ: Mapping[str, str] | None = None) -> Identity:
        """``CLUSTER_ID`` / ``CLUSTER_PRIVATEKEY`` override the file (both are checked together)."""
        env = os.environ if environ is None else environ
        pid, key = env.get("CLUSTER_ID"), env.get("CLUSTER_PRIVATEKEY")
        if not pid and not key:
            return self
        current = self.to_dict()
        return Identity.from_strings(pid or current["id"], key or current["private_key"], "identity (env)")


def parse_identity(raw: Any, where: str = "identity") -> Identity:
    """An ``Identity`` from the decoded identity.json object."""
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "identity.json must contain a JSON object with id and private_key")
    return Identity.from_strings(raw.get("id", ""), raw.get("private_key", ""), where)


def load_identity(path: Path | str, environ: Mapping[str, str] | None = None) -> Identity:
    """Load identity.json (+ env overrides). Missing file → ``ConfigError`` saying to run init."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(p), "does not exist; run 'ipfs-cluster-service init' to create an identity")
    except OSError as err:
        raise ConfigError(str(p), f"cannot be read: {err}")
    try:
        raw = json.loads(data)
    except ValueError as err:
        raise ConfigError(str(p), f"is not valid JSON: {err}")
    return parse_identity(raw).apply_env(environ)


def load_or_extract_identity(
    folder: Path | str,
    legacy_id: str = "",
    legacy_key: str = "",
    environ: Mapping[str, str] | None = None,
) -> Identity:
    """identity.json, or for pre-0.11 configs the ``cluster.id``/``private_key`` moved into a new identity.json."""
    path = Path(folder) / IDENTITY_JSON
    if not path.exists() and legacy_id and legacy_key:
        ident = Identity.from_strings(legacy_id, legacy_key, "cluster")
        ident.save(path)
        return ident.apply_env(environ)
    return load_identity(path, environ)


def new_identity(environ: Mapping[str, str] | None = None) -> Identity:
    """A fresh identity, unless ``CLUSTER_ID``/``CLUSTER_PRIVATEKEY`` provide one (as ``init`` does)."""
    env = os.environ if environ is None else environ
    if env.get("CLUSTER_ID") or env.get("CLUSTER_PRIVATEKEY"):
        return Identity.from_strings(env.get("CLUSTER_ID", ""), env.get("CLUSTER_PRIVATEKEY", ""), "identity (env)")
    return Identity.generate()
