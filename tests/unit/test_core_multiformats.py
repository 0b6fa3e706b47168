"""CIDs, peer IDs, multiaddrs and keys: the values every other component passes around."""

from __future__ import annotations

import hashlib
import json

import pytest
from tests.vectors import VECTORS_PATH

from pincluster.errors import InvalidInput
from pincluster.p2p.keys import InvalidKey, PrivateKey, PublicKey
from pincluster.types import CID, InvalidCID, InvalidMultiaddr, InvalidPeerID, Multiaddr, PeerID
from pincluster.types.cid import (
    DAG_PB,
    RAW,
    SHA2_256,
    b58decode,
    b58encode,
    decode_uvarint,
    encode_uvarint,
    multibase_decode,
    multibase_encode,
    multihash_decode,
    sha256_multihash,
    split_cid_prefix,
)

VECTORS = VECTORS_PATH


def test_cidv0_round_trip_and_properties() -> None:
    text = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    cid = CID.decode(text)
    assert str(cid) == text
    assert cid.version == 0 and cid.codec == DAG_PB and cid.hash_code == SHA2_256
    assert len(cid.bytes) == 34 and cid.multihash == cid.bytes
    v1 = cid.to_v1()
    assert str(v1) == "bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y"
    assert v1.to_v0() == cid and CID.decode(str(v1)) == v1


def test_cidv1_raw_and_bases() -> None:
    text = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    cid = CID.decode(text)
    assert cid.version == 1 and cid.codec == RAW
    assert cid.digest == hashlib.sha256(b"").digest()
    for base in ("base58btc", "base32upper", "base36", "base16", "base64", "base64url"):
        assert CID.decode(cid.encode(base)) == cid
    with pytest.raises(InvalidInput):
        cid.to_v0()


def test_cid_from_data_matches_kubo_vectors() -> None:
    """The vectors' raw-leaf CIDv1 of a single-block file is the raw multihash of its bytes."""
    data = json.loads(VECTORS.read_text())
    empty = data["files"]["empty"]
    assert str(CID.v1(RAW, sha256_multihash(b""))) == empty["cidv1_rawleaves_js_ipfs_only"]


@pytest.mark.parametrize(
    "bad", ["", "Qm123", "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQ0", "bafy!!", "x1234", "zzz", "b"]
)
def test_bad_cids_raise_one_typed_error_naming_the_input(bad: str) -> None:
    with pytest.raises(InvalidCID) as info:
        CID.decode(bad)
    assert repr(bad) in str(info.value) or "empty" in str(info.value)
    assert isinstance(info.value, InvalidInput)


def test_cid_ordering_hashing_and_embedded_prefix() -> None:
    a = CID.v0(hashlib.sha256(b"a").digest())
    b = CID.v1(RAW, sha256_multihash(b"b"))
    assert len({a, CID(a.bytes), b}) == 2
    assert sorted([b, a]) == sorted([a, b])
    buf = a.bytes + b.bytes + b"tail"
    first, pos = split_cid_prefix(buf)
    second, pos2 = split_cid_prefix(buf, pos)
    assert (first, second, buf[pos2:]) == (a, b, b"tail")


def test_varint_and_multihash() -> None:
    for n in (0, 1, 127, 128, 300, 0xB220, 2**40):
        enc = encode_uvarint(n)
        assert decode_uvarint(enc + b"x") == (n, len(enc))
    with pytest.raises(InvalidInput):
        decode_uvarint(b"\x80")
    code, digest = multihash_decode(sha256_multihash(b"x"))
    assert code == SHA2_256 and digest == hashlib.sha256(b"x").digest()
    with pytest.raises(InvalidCID):
        multihash_decode(b"\x12\x20abc")


def test_multibase_round_trips() -> None:
    for length in range(0, 40):
        data = bytes(range(length))
        for base in ("base58btc", "base32", "base32upper", "base36", "base16", "base64", "base64url"):
            assert multibase_decode(multibase_encode(base, data)) == data
    assert b58decode(b58encode(b"\0\0hello")) == b"\0\0hello"


def test_ed25519_peer_id_is_inline_and_round_trips() -> None:
    key = PrivateKey.generate_ed25519()
    pid = key.public_key().peer_id()
    assert str(pid).startswith("12D3KooW")
    assert PeerID.decode(str(pid)) == pid
    assert PeerID.decode(str(pid.to_cid())) == pid
    assert pid.extract_public_key() == key.public_key()
    restored = PrivateKey.from_protobuf(key.to_protobuf())
    assert restored.public_key().peer_id() == pid
    sig = restored.sign(b"msg")
    assert key.public_key().verify(sig, b"msg") and not key.public_key().verify(sig, b"other")


def test_rsa_peer_id_is_hashed() -> None:
    key = PrivateKey.generate_rsa(1024)
    pid = key.public_key().peer_id()
    assert str(pid).startswith("Qm") and pid.extract_public_key() is None
    assert pid.matches(PublicKey.from_protobuf(key.public_key().to_protobuf()))
    restored = PrivateKey.from_protobuf(key.to_protobuf())
    assert restored.public_key().verify(restored.sign(b"m"), b"m")


def test_go_written_peer_id_parses() -> None:
    # Peer IDs in both forms go-libp2p prints (identity multihash and sha2-256 multihash).
    texts = ("12D3KooWRzvzPzA3whBoYPu5mQWjt8t4t6F5hM8HuAtTnDfDPkvK", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
    for text in texts:
        assert str(PeerID.decode(text)) == text


@pytest.mark.parametrize(
    "bad", ["", "12D3KooW", "Qmfoo", "bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y"]
)
def test_bad_peer_ids(bad: str) -> None:
    with pytest.raises(InvalidPeerID):
        PeerID.decode(bad)


def test_bad_keys() -> None:
    with pytest.raises(InvalidKey):
        PrivateKey.from_protobuf(b"\x08\x01\x12\x03abc")
    with pytest.raises(InvalidKey):
        PublicKey.from_protobuf(b"\x08\x07\x12\x01a")


def test_multiaddrs() -> None:
    pid = PrivateKey.generate_ed25519().public_key().peer_id()
    ma = Multiaddr(f"/ip4/127.0.0.1/tcp/9096/p2p/{pid}")
    assert ma.peer_id == pid and ma.tcp_host_port() == ("127.0.0.1", 9096)
    assert str(ma.without_p2p()) == "/ip4/127.0.0.1/tcp/9096"
    assert ma.without_p2p().with_p2p(pid) == ma
    assert Multiaddr(f"/ipfs/{pid}") == Multiaddr(f"/p2p/{pid}")
    assert Multiaddr("/ip6/::1/tcp/5001").tcp_host_port() == ("::1", 5001)
    assert Multiaddr("/dns4/example.com/tcp/443/https").value_for("dns4") == "example.com"
    assert Multiaddr("/unix/tmp/ipfs.sock").unix_path() == "/tmp/ipfs.sock"
    assert Multiaddr.from_host_port("10.0.0.1", 80) == Multiaddr("/ip4/10.0.0.1/tcp/80")
    assert str(Multiaddr("/ip4/0.0.0.0/udp/4001/quic-v1")) == "/ip4/0.0.0.0/udp/4001/quic-v1"


@pytest.mark.parametrize(
    "bad",
    ["", "ip4/1.2.3.4", "/ip4/1.2.3", "/ip4/1.2.3.4/tcp/70000", "/ip4/1.2.3.4/tcp", "/foo/bar", "/p2p/notapeer"],
)
def test_bad_multiaddrs(bad: str) -> None:
    with pytest.raises(InvalidMultiaddr) as info:
        Multiaddr(bad)
    assert "multiaddr" in str(info.value)


def test_udp_address_is_not_tcp() -> None:
    with pytest.raises(InvalidMultiaddr):
        Multiaddr("/ip4/1.2.3.4/udp/1").tcp_host_port()


def test_multiaddr_webtransport_and_webrtc_certhash() -> None:
    """kubo announces /certhash addresses (WebTransport, WebRTC); the connector must parse them, not skip them."""
    wt = "/ip4/1.2.3.4/udp/4001/quic-v1/webtransport/certhash/uEiAkH5a4DPGKUuOBjYw0CgwjvcJCJMD2K_1aluKR_tpevQ"
    assert str(Multiaddr(wt)) == wt
    rtc = "/ip4/1.2.3.4/udp/4001/webrtc-direct/certhash/uEiAkH5a4DPGKUuOBjYw0CgwjvcJCJMD2K_1aluKR_tpevQ"
    assert Multiaddr(rtc).value_for("certhash") is not None
    with pytest.raises(InvalidMultiaddr, match="certhash"):
        Multiaddr("/ip4/1.2.3.4/udp/4001/webrtc-direct/certhash/zzz")
