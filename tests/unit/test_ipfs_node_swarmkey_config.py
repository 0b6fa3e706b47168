"""Swarm key file format, LIBP2P_FORCE_PNET, and the node config file."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pincluster.errors import ConfigError, LockError
from pincluster.ipfs.config import NodeConfig, parse_duration, parse_size
from pincluster.ipfs.node import IpfsNode
from pincluster.ipfs.swarmkey import (
    SwarmKeyError,
    format_swarm_key,
    generate_swarm_key,
    load_swarm_key,
    parse_swarm_key,
    require_key_if_forced,
    write_swarm_key,
)

KEY_HEX = "a" * 32 + "0123456789abcdef" * 2


def test_parse_standard_base16_key() -> None:
    text = f"/key/swarm/psk/1.0.0/\n/base16/\n{KEY_HEX}\n"
    assert parse_swarm_key(text) == bytes.fromhex(KEY_HEX)


def test_parse_base64_and_bin_encodings() -> None:
    key = bytes(range(32))
    b64 = f"/key/swarm/psk/1.0.0/\n/base64/\n{base64.b64encode(key).decode()}\n"
    assert parse_swarm_key(b64) == key
    assert parse_swarm_key(b"/key/swarm/psk/1.0.0/\n/bin/\n" + key) == key


def test_format_round_trip_and_random() -> None:
    key = generate_swarm_key()
    assert len(key) == 32 and key != generate_swarm_key()
    text = format_swarm_key(key)
    assert text.splitlines() == ["/key/swarm/psk/1.0.0/", "/base16/", key.hex()]
    assert parse_swarm_key(text) == key


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("/key/swarm/psk/1.0.0/\n/base16/\n" + "ab" * 31 + "\n", "31 bytes"),
        ("/key/swarm/psk/2.0.0/\n/base16/\n" + KEY_HEX + "\n", "first line"),
        ("/key/swarm/psk/1.0.0/\n/base58/\n" + KEY_HEX + "\n", "unknown encoding"),
        ("/key/swarm/psk/1.0.0/\n/base16/\nzz" + KEY_HEX[2:] + "\n", "not valid base16"),
        (KEY_HEX, "3 lines"),
    ],
)
def test_bad_keys_say_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(SwarmKeyError) as exc:
        parse_swarm_key(text)
    assert needle in str(exc.value)
    assert exc.value.key == "swarm.key"


def test_write_is_private_and_load_missing_is_none(tmp_path: Path) -> None:
    p = tmp_path / "swarm.key"
    assert load_swarm_key(p) is None
    key = generate_swarm_key()
    write_swarm_key(p, key)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert load_swarm_key(p) == key
    p.write_text("garbage")
    with pytest.raises(SwarmKeyError, match=str(p)):
        load_swarm_key(p)


def test_force_pnet_refuses_without_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBP2P_FORCE_PNET", "1")
    with pytest.raises(SwarmKeyError, match="LIBP2P_FORCE_PNET=1"):
        require_key_if_forced(None, tmp_path / "swarm.key")
    require_key_if_forced(b"x" * 32, tmp_path / "swarm.key")  # a key satisfies it
    monkeypatch.setenv("LIBP2P_FORCE_PNET", "0")
    require_key_if_forced(None, tmp_path / "swarm.key")


async def test_node_open_refuses_without_key_when_forced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    NodeConfig.generate().save(tmp_path)
    monkeypatch.setenv("LIBP2P_FORCE_PNET", "1")
    with pytest.raises(SwarmKeyError, match="refusing to start"):
        await IpfsNode.open(tmp_path)


async def test_repo_lock_is_exclusive(tmp_path: Path) -> None:
    NodeConfig.generate().save(tmp_path)
    node = await IpfsNode.open(tmp_path)
    try:
        with pytest.raises(LockError, match="locked by another process"):
            await IpfsNode.open(tmp_path)
    finally:
        await node.stop()
    node2 = await IpfsNode.open(tmp_path)  # released on stop
    await node2.stop()


def test_config_round_trip_and_secret_free_show(tmp_path: Path) -> None:
    cfg = NodeConfig.generate(bootstrap=[])
    cfg.extra = {"Custom": {"kept": True}}
    cfg.save(tmp_path)
    assert stat.S_IMODE((tmp_path / "config").stat().st_mode) == 0o600
    loaded = NodeConfig.load(tmp_path)
    assert loaded.peer_id == cfg.peer_id
    assert loaded.private_key.to_protobuf() == cfg.private_key.to_protobuf()
    assert loaded.extra["Custom"] == {"kept": True}
    shown = loaded.to_json(secrets=False)
    assert "PrivKey" not in shown["Identity"] and shown["Identity"]["PeerID"] == str(cfg.peer_id)
    assert shown["Datastore"]["StorageMax"] == "10GB"
    assert "PrivKey" not in json.dumps(shown)


def test_config_errors_name_the_key() -> None:
    good = NodeConfig.generate().to_json()
    cases: list[tuple[Callable[[dict[str, Any]], object], str]] = [
        (lambda d: d["Identity"].pop("PrivKey"), "Identity.PrivKey"),
        (lambda d: d["Identity"].__setitem__("PeerID", "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"),
         "Identity.PeerID"),
        (lambda d: d["Addresses"].__setitem__("API", "not-a-multiaddr"), "Addresses.API"),
        (lambda d: d.__setitem__("Bootstrap", ["/ip4/1.2.3.4/tcp/4001"]), "Bootstrap"),
        (lambda d: d["Datastore"].__setitem__("StorageMax", "lots"), "Datastore.StorageMax"),
        (lambda d: d["Exchange"].__setitem__("FetchTimeout", "soon"), "Exchange.FetchTimeout"),
    ]
    for mutate, key in cases:
        doc = json.loads(json.dumps(good))
        mutate(doc)
        with pytest.raises(ConfigError) as exc:
            NodeConfig.from_json(doc)
        assert exc.value.key == key


def test_missing_config_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pincluster-ipfs init"):
        NodeConfig.load(tmp_path)


def test_sizes_and_durations() -> None:
    assert parse_size("10GB", "k") == 10_000_000_000
    assert parse_size("512MiB", "k") == 512 << 20
    assert parse_duration("1m30s", "k") == 90.0
    assert parse_duration("500ms", "k") == 0.5
    with pytest.raises(ConfigError):
        parse_duration("5 s", "k")


def test_api_http_headers_are_read_checked_and_kept() -> None:
    """kubo's ``API.HTTPHeaders`` (the RPC API's CORS policy): a map of header names to lists of strings; other
    shapes are refused naming the key; the map survives a round trip."""
    from pincluster.errors import ConfigError
    from pincluster.ipfs.config import NodeConfig

    doc = NodeConfig.generate().to_json()
    assert "API" not in doc
    doc["API"] = {"HTTPHeaders": {"Access-Control-Allow-Origin": ["http://a.example"], "X-Empty": None}}
    cfg = NodeConfig.from_json(doc)
    assert cfg.http_headers == {"Access-Control-Allow-Origin": ["http://a.example"], "X-Empty": []}
    assert NodeConfig.from_json(cfg.to_json()).http_headers == cfg.http_headers
    for bad, key in (({"HTTPHeaders": ["x"]}, "API.HTTPHeaders"), ({"HTTPHeaders": {"X": "one"}}, "API.HTTPHeaders.X"),
                     ({"HTTPHeaders": {"X": [1]}}, "API.HTTPHeaders.X"), ("nope", "API")):
        doc["API"] = bad
        with pytest.raises(ConfigError) as info:
            NodeConfig.from_json(doc)
        assert key in str(info.value)


def test_api_authorizations_are_read_checked_and_kept() -> None:
    """kubo's ``API.Authorizations``: user → {AuthSecret, AllowedPaths}; a secret kubo would silently ignore (an
    unknown type, an empty one) is refused naming the key, and the map survives a round trip."""
    from pincluster.errors import ConfigError
    from pincluster.ipfs.config import NodeConfig

    doc = NodeConfig.generate().to_json()
    doc["API"] = {"Authorizations": {"alice": {"AuthSecret": "bearer:t", "AllowedPaths": ["/api/v0"]},
                                     "bob": {"AuthSecret": "basic:bob:pw", "AllowedPaths": None}}}
    cfg = NodeConfig.from_json(doc)
    assert cfg.authorizations == {"alice": ("bearer:t", ["/api/v0"]), "bob": ("basic:bob:pw", [])}
    assert NodeConfig.from_json(cfg.to_json()).authorizations == cfg.authorizations
    for bad, key in (({"Authorizations": ["x"]}, "API.Authorizations"),
                     ({"Authorizations": {"u": None}}, "API.Authorizations.u"),
                     ({"Authorizations": {"u": {"AuthSecret": "digest:x"}}}, "API.Authorizations.u.AuthSecret"),
                     ({"Authorizations": {"u": {"AuthSecret": ""}}}, "API.Authorizations.u.AuthSecret"),
                     ({"Authorizations": {"u": {"AuthSecret": 5}}}, "API.Authorizations.u.AuthSecret"),
                     ({"Authorizations": {"u": {"AuthSecret": "t", "AllowedPaths": "/api/v0"}}},
                      "API.Authorizations.u.AllowedPaths")):
        doc["API"] = bad
        with pytest.raises(ConfigError) as info:
            NodeConfig.from_json(doc)
        assert key in str(info.value)
