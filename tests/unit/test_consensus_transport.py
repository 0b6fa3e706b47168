"""Raft transport pieces: key derivation, frame authentication, node ids, the utility request client."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
from cryptography.fernet import InvalidToken

from pincluster.consensus.transport import (
    SECRET_MISMATCH,
    PeerNode,
    RaftAuthenticator,
    derive_raft_key,
    raft_request,
    split_host_port,
)
from pincluster.errors import InvalidInput, PeerError, Unavailable

S1 = bytes.fromhex("11" * 32)
S2 = bytes.fromhex("22" * 32)


def test_key_is_derived_not_raw() -> None:
    k1 = derive_raft_key(S1)
    assert len(k1) == 32 and k1 != S1
    assert derive_raft_key(S1) == k1 and derive_raft_key(S2) != k1


def test_frames_from_another_secret_fail_and_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    a, b = RaftAuthenticator(S1), RaftAuthenticator(S2)
    token = a.encrypt_at_time(b"hello", 5)
    assert a.extract_timestamp(token) == 5 and a.decrypt(token) == b"hello"
    view = b.for_connection("peer X")
    with caplog.at_level(logging.ERROR, logger="pincluster.raft"), pytest.raises(InvalidToken):
        view.extract_timestamp(token)
    assert b.failures == 1
    assert any(SECRET_MISMATCH in r.getMessage() and "peer X" in r.getMessage() for r in caplog.records)


def test_empty_secret_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pincluster.raft"):
        RaftAuthenticator(b"")
    assert any("NOT authenticated" in r.getMessage() for r in caplog.records)


def test_peer_node_ids() -> None:
    n = PeerNode("QmA@127.0.0.1:9098")
    assert (n.peer_id, n.host, n.port, n.address, n.id) == ("QmA", "127.0.0.1", 9098, n.id, "QmA@127.0.0.1:9098")
    v6 = PeerNode("QmB@[::1]:4000")
    assert v6.host == "::1" and v6.port == 4000
    assert PeerNode.spec("QmB", "::1", 4000) == "QmB@[::1]:4000"
    assert n == PeerNode("QmA@127.0.0.1:9098") and n != PeerNode("QmA@127.0.0.1:9099")
    for bad in ("127.0.0.1:9098", "QmA@", "QmA@host", "QmA@host:http", "QmA@host:70000"):
        with pytest.raises(InvalidInput):
            PeerNode(bad)
    assert split_host_port("h:1") == ("h", 1)


def test_request_to_a_closed_port_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unavailable):
        raft_request(RaftAuthenticator(S1), f"127.0.0.1:{port}", ["status"], 2.0)


def test_request_closed_during_handshake_names_the_secret() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(4096)  # what a peer with another secret does: cannot authenticate it, hangs up
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    with pytest.raises(PeerError, match=SECRET_MISMATCH):
        raft_request(RaftAuthenticator(S1), f"127.0.0.1:{port}", ["status"], 5.0)
    t.join()
    srv.close()
