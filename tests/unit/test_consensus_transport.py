"""Raft transport pieces: key derivation, frame authentication, node ids, the utility request client."""

from __future__ import annotations

import logging
import os
import pickle
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pysyncobj.poller import createPoller

from pincluster.consensus.transport import (
    SECRET_MISMATCH,
    FrameError,
    PeerNode,
    RaftAuthenticator,
    SealedConnection,
    SealedServer,
    SecretTCPTransport,
    decode_message,
    derive_raft_key,
    encode_message,
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


def _body(frame: bytes) -> bytes:
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    return frame[4:]


def test_frames_from_another_secret_fail_and_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    a, b = RaftAuthenticator(S1), RaftAuthenticator(S2)
    frame = _body(a.seal(b"hello"))
    assert b"hello" not in frame
    assert a.opener().open(frame) == b"hello"
    view = b.for_connection("peer X")
    with caplog.at_level(logging.ERROR, logger="pincluster.raft"), pytest.raises(FrameError):
        view.opener().open(frame)
    assert b.failures == 1
    assert any(SECRET_MISMATCH in r.getMessage() and "peer X" in r.getMessage() for r in caplog.records)


def test_replayed_reordered_tampered_and_spliced_frames_are_refused() -> None:
    a = RaftAuthenticator(S1)
    f1, f2, f3 = (_body(a.seal(m)) for m in (b"one", b"two", b"three"))
    opener = a.opener("peer Y")
    assert opener.open(f1) == b"one" and opener.open(f3) == b"three"
    with pytest.raises(FrameError, match="replayed"):
        opener.open(f3)
    with pytest.raises(FrameError, match="replayed"):
        opener.open(f2)  # older counter than the last accepted one
    other = _body(RaftAuthenticator(S1).seal(b"four"))  # same secret, another sender (salt)
    with pytest.raises(FrameError, match="switched keys"):
        opener.open(other)
    tampered = bytearray(_body(a.seal(b"five")))
    tampered[-1] ^= 1
    with pytest.raises(FrameError, match="fail authentication"):
        opener.open(bytes(tampered))
    with pytest.raises(FrameError, match="not pincluster Raft frames"):
        a.opener().open(b"gAAAAABfernet-token-of-an-older-release")
    assert a.failures == 5


def test_sealers_use_distinct_keys() -> None:
    a = RaftAuthenticator(S1)
    s1, s2 = a.sealer(), a.sealer()
    o1, o2 = bytearray(), bytearray()
    s1.seal_into(o1, b"same")
    s2.seal_into(o2, b"same")
    assert o1[4 + 17:4 + 25] == o2[4 + 17:4 + 25]  # same counter...
    assert o1[4 + 25:] != o2[4 + 25:]  # ...but another key, so another ciphertext


def test_message_encoding_roundtrip_and_allow_list() -> None:
    msg = {"type": "append_entries", "entries": [(b"\x00cmd", 7, 2)], "term": 2, "s": {1, 2}}
    assert decode_message(encode_message(msg)) == msg
    big = [b"a" * 200_000, 1]
    enc = encode_message(big)
    assert enc[:1] == b"\x01" and len(enc) < 10_000 and decode_message(enc) == big
    evil = b"\x00" + pickle.dumps(os.system, 5)
    with pytest.raises(pickle.UnpicklingError):
        decode_message(evil)


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


def _pump(poller: Any, until: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out pumping the poller"
        poller.poll(0.01)


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_sealed_connections_over_real_sockets() -> None:
    poller = createPoller("auto")
    auth = RaftAuthenticator(S1)
    got: list[Any] = []
    accepted: list[SealedConnection] = []

    def on_new(conn: SealedConnection) -> None:
        conn.encryptor = auth.for_connection(conn.remote)
        conn.setOnMessageReceivedCallback(got.append)
        accepted.append(conn)

    server = SealedServer(poller, "127.0.0.1", 0, onNewConnection=on_new)
    server.bind()
    try:
        client = SealedConnection(poller, encryptor=auth.for_connection("server"))
        assert client.connect("127.0.0.1", server.port)
        big = {"entries": [(os.urandom(1000), i, 1) for i in range(300)]}  # several recv() calls
        client.send({"type": "hello"})
        client.send(big)
        _pump(poller, lambda: len(got) == 2)
        assert got == [{"type": "hello"}, big]
        # connections read through one receive buffer per thread: interleaved large messages stay whole
        other = SealedConnection(poller, encryptor=auth.for_connection("server"))
        assert other.connect("127.0.0.1", server.port)
        other.send({"type": "hello"})  # a first frame is small (a peer that has not authenticated yet)
        _pump(poller, lambda: len(got) == 3)
        bigs = [{"from": k, "entries": [(os.urandom(900), i, k) for i in range(400)]} for k in range(4)]
        for k, message in enumerate(bigs):
            (client if k % 2 else other).send(message)
        _pump(poller, lambda: len(got) == 7)
        assert sorted(got[3:], key=lambda m: m["from"]) == bigs
        other.disconnect()

        # an oversized first frame from an unauthenticated peer is refused before it is buffered
        raw = socket.create_connection(("127.0.0.1", server.port))
        raw.setblocking(False)
        _pump(poller, lambda: len(accepted) == 2)
        raw.sendall(struct.pack("!I", 10 * 1024 * 1024) + b"\x02" * 100)
        _pump(poller, lambda: _closed(raw))
        raw.close()

        # a replayed frame is refused (the first copy is accepted)
        frame = auth.seal(encode_message("once"))
        raw = socket.create_connection(("127.0.0.1", server.port))
        raw.setblocking(False)
        raw.sendall(frame)
        _pump(poller, lambda: got[-1] == "once")
        raw.sendall(frame)
        _pump(poller, lambda: _closed(raw))
        raw.close()
        assert auth.failures == 2
        client.disconnect()
    finally:
        server.unbind()


class _FakeJournal(list):  # type: ignore[type-arg]
    """PySyncObj's journal as the transport sees it: entries (command, idx, term) and ``flush`` (msync)."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


def _transport_with(journal: object, sync_journal: bool = True) -> tuple[SecretTCPTransport, list[object]]:
    from types import SimpleNamespace

    t = object.__new__(SecretTCPTransport)
    t._syncObj = SimpleNamespace(_SyncObj__raftLog=journal)
    t._sync_journal = sync_journal
    t._flushed_mark = (0, None)
    t.journal_flushes = 0
    t.defer_journal_sync = False
    t.entries_sent = t.entries_resent = 0
    t._highest_sent = {}
    return t, []


def test_entries_sent_again_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    from pysyncobj.transport import TCPTransport

    monkeypatch.setattr(TCPTransport, "send", lambda self, node, message: True)
    t, _ = _transport_with(None, sync_journal=False)

    def append(node: str, first: int, last: int) -> None:
        t.send(node, {"type": "append_entries", "entries": [(b"c", i, 1) for i in range(first, last + 1)]})

    append("a", 1, 3)
    append("b", 1, 3)  # another node: not a resend
    append("a", 4, 5)
    t.send("a", {"type": "append_entries", "entries": []})  # a heartbeat carries no entries
    assert (t.entries_sent, t.entries_resent) == (8, 0)
    append("a", 3, 7)  # 3..5 again
    append("a", 2, 2)
    assert (t.entries_sent, t.entries_resent) == (14, 4)


def test_journal_synced_before_messages_that_vouch_for_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    from pysyncobj.transport import TCPTransport

    sent: list[object] = []
    monkeypatch.setattr(TCPTransport, "send", lambda self, node, message: sent.append(message) or True)
    journal = _FakeJournal()
    t, _ = _transport_with(journal)
    journal.append((b"cmd", 1, 1))
    assert t.send("n", {"type": "apply_command", "command": b"x"})
    assert journal.flushes == 0  # a forwarded command vouches for nothing
    t.send("n", {"type": "next_node_idx", "next_node_idx": 2})
    assert journal.flushes == 1  # a follower's answer: entries on disk first
    t.send("n", {"type": "append_entries", "entries": []})
    assert journal.flushes == 1  # nothing added since: no second msync
    journal.append((b"cmd", 2, 1))
    t.send("n", {"type": "append_entries", "entries": [(b"cmd", 2, 1)]})
    assert journal.flushes == 2
    assert len(sent) == 4


def test_journal_sync_can_be_switched_off_and_memory_journals_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from pysyncobj.transport import TCPTransport

    monkeypatch.setattr(TCPTransport, "send", lambda self, node, message: True)
    journal = _FakeJournal()
    journal.append((b"cmd", 1, 1))
    t, _ = _transport_with(journal, sync_journal=False)
    t.send("n", {"type": "next_node_idx"})
    assert journal.flushes == 0
    t2, _ = _transport_with([(b"cmd", 1, 1)])  # no flush method (PySyncObj's MemoryJournal)
    assert t2.send("n", {"type": "next_node_idx"})


def test_leader_syncs_right_after_its_end_of_tick_append_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Raft §10.2.1: the leader may replicate while it writes its own log, as long as the write is done before
    it counts itself; RaftConsensus sends the end-of-tick append-entries deferred, then calls flush_journal."""
    from pysyncobj.transport import TCPTransport

    monkeypatch.setattr(TCPTransport, "send", lambda self, node, message: True)
    journal = _FakeJournal()
    journal.append((b"cmd", 1, 1))
    t, _ = _transport_with(journal)
    t.defer_journal_sync = True
    t.send("n", {"type": "append_entries", "entries": [(b"cmd", 1, 1)]})
    assert journal.flushes == 0
    t.send("n", {"type": "next_node_idx"})  # only the leader's own append-entries wait
    assert journal.flushes == 1
    journal.append((b"cmd", 2, 1))
    t.send("n", {"type": "append_entries", "entries": [(b"cmd", 2, 1)]})
    t.defer_journal_sync = False
    t.flush_journal()
    assert journal.flushes == 2 and t.journal_flushes == 2
