"""identity.json, the cluster secret and the peerstore file."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from pincluster.config.identity import (
    Identity,
    load_identity,
    load_or_extract_identity,
    new_identity,
    parse_identity,
)
from pincluster.config.peerstore import load_peerstore, parse_peerstore, save_peerstore
from pincluster.config.secret import decode_secret, encode_secret, generate_secret
from pincluster.errors import ConfigError
from pincluster.p2p.keys import PrivateKey
from pincluster.types.multiaddr import Multiaddr


@pytest.fixture(scope="module")
def rsa_identity() -> Identity:
    key = PrivateKey.generate_rsa(2048)
    return Identity(key.public_key().peer_id(), key)


def test_new_identity_is_ed25519_and_round_trips(tmp_path: Path) -> None:
    ident = Identity.generate()
    d = ident.to_dict()
    assert d["id"].startswith("12D3KooW")
    assert d["private_key"].startswith("CAESQ")
    path = ident.save(tmp_path / "identity.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert text.startswith('{\n    "id": ')  # Go writes identity.json with 4 spaces
    loaded = load_identity(path, environ={})
    assert loaded.peer_id == ident.peer_id
    assert loaded.to_dict() == d


def test_rsa_identity_round_trips(tmp_path: Path, rsa_identity: Identity) -> None:
    d = rsa_identity.to_dict()
    assert d["id"].startswith("Qm")
    assert d["private_key"].startswith("CAAS")
    path = rsa_identity.save(tmp_path / "identity.json")
    loaded = load_identity(path, environ={})
    assert loaded.peer_id == rsa_identity.peer_id
    assert loaded.to_dict() == d


def test_mismatched_id_is_refused(rsa_identity: Identity) -> None:
    other = Identity.generate()
    with pytest.raises(ConfigError, match="identity ID does not match the private_key") as info:
        parse_identity({"id": str(rsa_identity.peer_id), "private_key": other.to_dict()["private_key"]})
    assert info.value.key == "identity.id"


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({"private_key": "CAESQ"}, "identity.id", "missing"),
        ({"id": "12D3KooWM839sx2fMkfWqGkTyRZtTdW3bsbYRG5iubVXA4Dst8pm"}, "identity.private_key", "missing"),
        ({"id": "nope", "private_key": "CAES"}, "identity.id", "invalid peer ID"),
        ({"id": "12D3KooWM839sx2fMkfWqGkTyRZtTdW3bsbYRG5iubVXA4Dst8pm", "private_key": "!!"},
         "identity.private_key", "base64"),
        ({"id": "12D3KooWM839sx2fMkfWqGkTyRZtTdW3bsbYRG5iubVXA4Dst8pm",
          "private_key": base64.b64encode(b"\x08\x07\x12\x01x").decode()}, "identity.private_key", "libp2p"),
    ],
)  # fmt: skip
def test_bad_identity_fields(raw: dict[str, str], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_identity(raw)
    assert info.value.key == key
    assert fragment in str(info.value)


def test_identity_env_overrides(tmp_path: Path, rsa_identity: Identity) -> None:
    path = Identity.generate().save(tmp_path / "identity.json")
    env = {"CLUSTER_ID": str(rsa_identity.peer_id), "CLUSTER_PRIVATEKEY": rsa_identity.to_dict()["private_key"]}
    assert load_identity(path, environ=env).peer_id == rsa_identity.peer_id
    with pytest.raises(ConfigError, match="does not match"):
        load_identity(path, environ={"CLUSTER_ID": str(rsa_identity.peer_id)})
    assert new_identity(env).peer_id == rsa_identity.peer_id
    assert new_identity({}).peer_id != rsa_identity.peer_id


def test_missing_identity_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ipfs-cluster-service init"):
        load_identity(tmp_path / "identity.json", environ={})
    (tmp_path / "identity.json").write_text("[]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_identity(tmp_path / "identity.json", environ={})


def test_legacy_identity_is_extracted(tmp_path: Path, rsa_identity: Identity) -> None:
    d = rsa_identity.to_dict()
    ident = load_or_extract_identity(tmp_path, d["id"], d["private_key"], environ={})
    assert ident.peer_id == rsa_identity.peer_id
    assert json.loads((tmp_path / "identity.json").read_text()) == d


# ---------------------------------------------------------------------------------------------- secret


def test_secret_round_trip() -> None:
    s = generate_secret()
    assert len(s) == 32
    assert decode_secret(encode_secret(s)) == s
    assert decode_secret(encode_secret(s).upper()) == s
    assert decode_secret("") == b""


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ab" * 31, "too short: input secret is 31 bytes"),
        ("ab" * 33, "too long: input secret is 33 bytes"),
        ("abc", "odd"),
        ("zz" * 32, "not hexadecimal"),
    ],
)
def test_bad_secrets_say_why(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        decode_secret(text)
    assert info.value.key == "cluster.secret"
    assert fragment in str(info.value)


# ---------------------------------------------------------------------------------------------- peerstore

PID = "12D3KooWM839sx2fMkfWqGkTyRZtTdW3bsbYRG5iubVXA4Dst8pm"


def test_peerstore_round_trip(tmp_path: Path) -> None:
    addrs = [Multiaddr(f"/ip4/10.0.0.1/tcp/9096/p2p/{PID}"), Multiaddr(f"/dns4/peer.example/tcp/9096/p2p/{PID}")]
    path = tmp_path / "peerstore"
    assert save_peerstore(path, [*addrs, addrs[0]]) == 2
    assert path.read_text() == "".join(f"{a}\n" for a in addrs)
    assert load_peerstore(path) == addrs
    assert load_peerstore(tmp_path / "missing") == []
    assert save_peerstore(path, []) == 0
    assert path.read_text() == ""
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_peerstore_skips_bad_and_foreign_lines(caplog: pytest.LogCaptureFixture) -> None:
    text = f"# comment\n\n/ip4/10.0.0.1/tcp/1/p2p/{PID}\n/ip4/999.1.1.1/tcp/1\nnot an addr\n"
    assert [str(a) for a in parse_peerstore(text)] == [f"/ip4/10.0.0.1/tcp/1/p2p/{PID}"]
    assert "skipping invalid multiaddress" in caplog.text
