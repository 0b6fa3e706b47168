"""pincluster.config: ``service.json`` (typed sections, env overrides), ``identity.json``, secret, peerstore.

Typical use by the daemon::

    cfg = load_config(folder)                    # service.json + CLUSTER_* env, validated
    ident = load_identity(folder / IDENTITY_JSON)
    cfg.require_supported_consensus()            # "raft"
    if cfg.is_loaded("api.restapi"): start_rest(cfg.restapi)
"""

from pincluster.config.identity import IDENTITY_JSON, Identity, load_identity, load_or_extract_identity, new_identity
from pincluster.config.peerstore import PEERSTORE, load_peerstore, save_peerstore
from pincluster.config.secret import decode_secret, encode_secret, generate_secret
from pincluster.config.service import (
    COMPONENTS,
    DEFAULT_CONFIG_DIR,
    SERVICE_JSON,
    ServiceConfig,
    default_config,
    load_config,
    parse_config,
)

__all__ = [
    "COMPONENTS",
    "DEFAULT_CONFIG_DIR",
    "IDENTITY_JSON",
    "PEERSTORE",
    "SERVICE_JSON",
    "Identity",
    "ServiceConfig",
    "decode_secret",
    "default_config",
    "encode_secret",
    "generate_secret",
    "load_config",
    "load_identity",
    "load_or_extract_identity",
    "load_peerstore",
    "new_identity",
    "parse_config",
    "save_peerstore",
]
