"""Parsing of REST query parameters and path values into typed values, with Go's error texts (spec §1.3)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pincluster.api.interface import AddParams
from pincluster.errors import InvalidInput
from pincluster.ipfs.unixfs.importer import AddOptions
from pincluster.types.cid import CID
from pincluster.types.gotext import parse_go_bool
from pincluster.types.models import PinOptions
from pincluster.types.peer import PeerID
from pincluster.types.status import PinMode, PinType

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "go_bool",
    "parse_add_params",
    "parse_cid",
    "parse_ipfs_path",
    "parse_peer",
    "parse_pin_types",
]

DEFAULT_SHARD_SIZE = 104857600
_DATA_TYPES = (PinType.DATA, PinType.META, PinType.CLUSTER_DAG, PinType.SHARD)


def go_bool(query: Mapping[str, str], name: str, default: bool) -> bool:
    """Go's ``strconv.ParseBool`` on a query value; absent or empty gives ``default``."""
    value = query.get(name, "")
    if value == "":
        return default
    parsed = parse_go_bool(value)
    if parsed is not None:
        return parsed
    raise InvalidInput(f"parameter {name} invalid")


def parse_cid(text: str) -> CID:
    try:
        return CID.decode(text)
    except InvalidInput as exc:
        raise InvalidInput(f"error decoding Cid: {exc}") from None


def parse_peer(text: str) -> PeerID:
    try:
        return PeerID.decode(text)
    except InvalidInput as exc:
        raise InvalidInput(f"error decoding Peer ID: {exc}") from None


def parse_ipfs_path(key_type: str, rest: str) -> str:
    """``/<keyType>/<rest>`` with trailing ``/`` trimmed; ``/ipfs`` and ``/ipld`` paths must start with a CID."""
    rest = rest.strip("/")
    if key_type not in ("ipfs", "ipns", "ipld") or not rest:
        raise InvalidInput(f"error parsing path: /{key_type}/{rest} is not a valid IPFS path")
    if key_type in ("ipfs", "ipld"):
        try:
            CID.decode(rest.split("/", 1)[0])
        except InvalidInput as exc:
            raise InvalidInput(f"error parsing path: /{key_type}/{rest}: {exc}") from None
    return f"/{key_type}/{rest}"


def parse_pin_types(text: str) -> list[PinType] | None:
    """``/allocations?filter=``: comma list OR-ed (unknown names tolerated unless nothing else is given).
    None means every type."""
    bits = 0
    for part in text.split(","):
        bits |= PinType.from_filter_string(part).bits
    if bits == PinType.BAD.bits:
        raise InvalidInput(
            f"invalid filter value {text!r}: use pin, meta-pin, clusterdag-pin, shard-pin or all, comma-separated"
        )
    if bits & PinType.ALL.bits == PinType.ALL.bits:
        return None
    return [t for t in _DATA_TYPES if bits & t.bits]


def parse_add_params(query: Mapping[str, str], now: datetime | None = None) -> AddParams:
    """``/add`` parameters (spec §1.10): pin options, import options and flags; mode is forced recursive."""
    layout = query.get("layout", "")
    if layout not in ("", "balanced", "trickle"):
        raise InvalidInput("layout parameter is invalid")
    fmt = query.get("format", "") or "unixfs"
    if fmt not in ("unixfs", "car"):
        raise InvalidInput("format parameter is invalid")
    flags = {n: go_bool(query, n, d) for n, d in (
        ("local", False), ("recursive", False), ("hidden", False), ("wrap-with-directory", False),
        ("shard", False), ("stream-channels", True), ("no-pin", False), ("progress", False), ("nocopy", False),
    )}
    kubo: dict[str, str] = {
        "hidden": str(flags["hidden"]).lower(),
        "wrap-with-directory": str(flags["wrap-with-directory"]).lower(),
        "progress": str(flags["progress"]).lower(),
        "trickle": str(layout == "trickle").lower(),
        "pin": str(not flags["no-pin"]).lower(),
    }
    if query.get("raw-leaves", "") != "":
        kubo["raw-leaves"] = str(go_bool(query, "raw-leaves", False)).lower()
    for key in ("chunker", "hash", "cid-version"):
        if query.get(key):
            kubo[key] = query[key]
    if "cid-version" in kubo:
        try:
            int(kubo["cid-version"])
        except ValueError:
            raise InvalidInput("parameter cid-version invalid") from None
    import_options = AddOptions.from_kubo_args(kubo)
    pin_options = PinOptions.from_query(query, now=now)
    shard_size = pin_options.shard_size or DEFAULT_SHARD_SIZE
    pin_options = PinOptions(
        replication_factor_min=pin_options.replication_factor_min,
        replication_factor_max=pin_options.replication_factor_max,
        name=pin_options.name,
        mode=PinMode.RECURSIVE,
        shard_size=shard_size,
        user_allocations=pin_options.user_allocations,
        expire_at=pin_options.expire_at,
        metadata=pin_options.metadata,
        pin_update=None,
        origins=pin_options.origins,
    )
    return AddParams(
        import_options=import_options,
        pin_options=pin_options,
        local=flags["local"],
        no_pin=flags["no-pin"],
        stream_channels=flags["stream-channels"],
        format=fmt,
        shard=flags["shard"],
        shard_size=shard_size,
        extra={k: query[k] for k in ("recursive", "nocopy") if k in query},
    )
