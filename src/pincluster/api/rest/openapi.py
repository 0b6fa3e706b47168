"""The OpenAPI 3.0 document of the REST API, built from :data:`~pincluster.api.rest.server.ROUTES` so that
the router and its documentation cannot drift apart."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pincluster.types.models import VERSION

if TYPE_CHECKING:
    from pincluster.api.rest.server import Route

__all__ = ["SCHEMAS", "openapi_document"]

_S: dict[str, Any] = {"type": "string"}
_I: dict[str, Any] = {"type": "integer"}
_B: dict[str, Any] = {"type": "boolean"}
_T: dict[str, Any] = {"type": "string", "format": "date-time"}
_CID: dict[str, Any] = {"type": "string", "nullable": True, "description": "CID"}
_STRS: dict[str, Any] = {"type": "array", "items": _S, "nullable": True}
_MAP: dict[str, Any] = {"type": "object", "additionalProperties": _S, "nullable": True}


def _obj(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props}


_PIN_OPTS = {
    "replication_factor_min": _I, "replication_factor_max": _I, "name": _S,
    "mode": {"type": "string", "enum": ["recursive", "direct"]}, "shard_size": _I,
    "user_allocations": _STRS, "expire_at": _T, "metadata": _MAP, "pin_update": _CID, "origins": _STRS,
}
_STATUSES = ["undefined", "cluster_error", "pin_error", "unpin_error", "pinned", "pinning", "unpinning",
             "unpinned", "remote", "pin_queued", "unpin_queued", "sharded", "unexpectedly_unpinned"]
_METRIC = {"name": _S, "peer": _S, "value": _S, "expire": _I, "valid": _B, "weight": _I,
           "partitionable": _B, "received_at": _I}

#: JSON shapes of spec §2.
SCHEMAS: dict[str, Any] = {
    "Error": _obj({"code": _I, "message": _S}),
    "Version": _obj({"version": _S}),
    "ID": _obj({
        "id": _S, "addresses": _STRS, "cluster_peers": _STRS, "cluster_peers_addresses": _STRS,
        "version": _S, "commit": _S, "rpc_protocol_version": _S, "error": _S,
        "ipfs": _obj({"id": _S, "addresses": _STRS, "error": _S}), "peername": _S,
    }),
    "PeerAdd": _obj({"peer_id": _S}),
    "Pin": _obj({**_PIN_OPTS, "cid": _CID,
                 "type": {"type": "string", "enum": ["pin", "meta-pin", "clusterdag-pin", "shard-pin"]},
                 "allocations": _STRS, "max_depth": _I, "reference": _CID, "timestamp": _T}),
    "PinInfoShort": _obj({
        "peername": _S, "ipfs_peer_id": _S, "ipfs_peer_addresses": _STRS,
        "status": {"type": "string", "enum": _STATUSES}, "timestamp": _T, "error": _S,
        "attempt_count": _I, "priority_pin": _B,
    }),
    "GlobalPinInfo": _obj({
        "cid": _CID, "name": _S, "allocations": _STRS, "origins": _STRS, "created": _T, "metadata": _MAP,
        "peer_map": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/PinInfoShort"}},
    }),
    "AddedOutput": _obj({"name": _S, "cid": _CID, "bytes": _I, "size": _I, "allocations": _STRS}),
    "Metric": _obj(_METRIC),
    "Alert": _obj({**_METRIC, "triggered_at": _T}),
    "ConnectGraph": _obj({
        "cluster_id": _S, "id_to_peername": _MAP,
        "ipfs_links": {"type": "object", "additionalProperties": _STRS, "nullable": True},
        "cluster_links": {"type": "object", "additionalProperties": _STRS, "nullable": True},
        "cluster_trust_links": {"type": "object", "additionalProperties": _B, "nullable": True},
        "cluster_to_ipfs": _MAP,
    }),
    "GlobalRepoGC": _obj({"peer_map": {"type": "object", "nullable": True, "additionalProperties": _obj({
        "peer": _S, "peername": _S, "error": _S,
        "keys": {"type": "array", "nullable": True, "items": _obj({"key": _CID, "error": _S})},
    })}}),
    "Bandwidth": {"type": "object", "nullable": True, "additionalProperties": _obj({
        "total_in": _I, "total_out": _I, "rate_in": {"type": "number"}, "rate_out": {"type": "number"}})},
    "Token": _obj({"token": _S}),
}

_PARAM_DOC = {
    "local": "`true`: only this peer; anything else: cluster-wide",
    "filter": "comma-separated names (pin types for /allocations, tracker statuses for /pins)",
    "cids": "comma-separated CIDs: statuses of just these (filter is then ignored)",
    "meta-*": "each `meta-<key>=<value>` adds a metadata entry",
    "replication": "sets both replication-min and replication-max",
    "stream-channels": "false: one JSON array instead of NDJSON",
}


def _ref(name: str) -> dict[str, Any]:
    if name.endswith("[]"):
        inner = name[:-2]
        return {"type": "array", "items": _S if inner == "string" else {"$ref": f"#/components/schemas/{inner}"}}
    if name == "object":
        return {"type": "object"}
    return {"$ref": f"#/components/schemas/{name}"}


def _path(pattern: str) -> str:
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", pattern)


def _operation(r: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": r.summary, "operationId": f"{r.handler}_{r.method.lower()}"}
    params: list[dict[str, Any]] = []
    for name in re.findall(r"\{(\w+)", r.path):
        params.append({"name": name, "in": "path", "required": True, "schema": _S})
    for q in r.query:
        p: dict[str, Any] = {"name": q, "in": "query", "required": False, "schema": _S}
        if q in _PARAM_DOC:
            p["description"] = _PARAM_DOC[q]
        params.append(p)
    if params:
        op["parameters"] = params
    if r.body == "multipart":
        op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object"}}}}
    elif r.body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(r.body)}}}
    err = {"description": "error", "content": {"application/json": {"schema": _ref("Error")}}}
    responses: dict[str, Any] = {}
    if r.status == 204:
        responses["204"] = {"description": "no content"}
    elif r.streaming:
        responses["200"] = {
            "description": "NDJSON stream, one object per line; errors after the first line arrive in the "
                           "`X-Stream-Error` HTTP trailer",
            "headers": {"Trailer": {"schema": _S}},
            "content": {"application/x-ndjson": {"schema": _ref(r.response)}},
        }
        if r.handler != "add":
            responses["204"] = {"description": "empty stream"}
    else:
        responses["200"] = {"description": "OK", "content": {"application/json": {"schema": _ref(r.response)}}}
    responses["400"] = {**err, "description": "bad input"}
    responses["401"] = {**err, "description": "authentication required or failed"}
    responses["404"] = {**err, "description": "not found"}
    responses["500"] = {**err, "description": "cluster error"}
    op["responses"] = responses
    if r.path in ("/health", "/openapi.json"):
        op["security"] = []
    return op


def openapi_document(routes: Iterable[Route]) -> dict[str, Any]:
    """The document served at ``GET /openapi.json``."""
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(_path(r.path), {})[r.method.lower()] = _operation(r)
    return {
        "openapi": "3.0.3",
        "info": {"title": "IPFS Cluster REST API (pincluster)", "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"},
                                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"basic": []}, {"bearer": []}],
    }
