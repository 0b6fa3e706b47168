"""The peerstore file (spec §7.6) and the host's use of it (learn on connect, save, bootstrap)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pincluster.errors import InvalidInput
from pincluster.p2p.host import Host
from pincluster.p2p.keys import PrivateKey
from pincluster.p2p.peerstore import Peerstore, read_peerstore_file
from pincluster.types.multiaddr import Multiaddr
from pincluster.types.peer import PeerID

pytestmark = pytest.mark.timeout(20)
P1 = "12D3KooWGf8TNTm7xCzYZpB8VBVYPkNpQxTQc8yJ5HTUYRDzb5xK"
P2 = "QmdEtBsfumeH2V6dnx1fgn8zuW7XYjWdgJF4NEYpEBcTsg"


def pid() -> PeerID:
    return PrivateKey.generate_ed25519().public_key().peer_id()


def test_reads_go_file_skipping_noise(tmp_path: Path) -> None:
    p1 = pid()
    f = tmp_path / "peerstore"
    f.write_text(
        f"/ip4/10.0.0.1/tcp/9096/p2p/{p1}\n"
        "\n# a comment\n"
        f"/dns4/peer2.example/tcp/9096/p2p/{P2}\n"
        "/ip4/10.0.0.3/tcp/9096\n"  # no /p2p: skipped
        "/ip4/999.0.0.1/tcp/1/p2p/x\n"  # invalid: skipped
        f"/ip4/10.0.0.1/udp/9096/quic-v1/p2p/{p1}\n"
    )
    got = read_peerstore_file(f)
    assert [str(a) for a in got] == [
        f"/ip4/10.0.0.1/tcp/9096/p2p/{p1}",
        f"/dns4/peer2.example/tcp/9096/p2p/{P2}",
        f"/ip4/10.0.0.1/udp/9096/quic-v1/p2p/{p1}",
    ]
    ps = Peerstore(f)
    assert ps.load() == 3
    assert ps.peers() == [p1, PeerID.decode(P2)]
    assert [str(a) for a in ps.addrs(p1)] == ["/ip4/10.0.0.1/tcp/9096", "/ip4/10.0.0.1/udp/9096/quic-v1"]
    assert read_peerstore_file(tmp_path / "missing") == []


def test_saves_on_change_one_line_per_addr(tmp_path: Path) -> None:
    f = tmp_path / "peerstore"
    ps = Peerstore(f)
    p = pid()
    assert ps.add_addrs(p, [Multiaddr("/ip4/127.0.0.1/tcp/1"), Multiaddr(f"/ip4/127.0.0.2/tcp/2/p2p/{p}")])
    assert f.read_text() == f"/ip4/127.0.0.1/tcp/1/p2p/{p}\n/ip4/127.0.0.2/tcp/2/p2p/{p}\n"
    mtime = f.stat().st_mtime_ns
    assert not ps.add_addrs(p, [Multiaddr("/ip4/127.0.0.1/tcp/1")])  # nothing new: not rewritten
    assert f.stat().st_mtime_ns == mtime
    with pytest.raises(InvalidInput, match="belongs to"):
        ps.add_addrs(p, [Multiaddr(f"/ip4/127.0.0.3/tcp/3/p2p/{pid()}")])
    ps.remove_peer(p)
    assert f.read_text() == ""
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".peerstore.")]  # no temp files left


async def test_host_learns_saves_and_bootstraps(tmp_path: Path) -> None:
    psk = os.urandom(32)
    listen = [Multiaddr("/ip4/127.0.0.1/tcp/0")]
    b = Host(PrivateKey.generate_ed25519(), psk, "/pincluster/rpc/1.0", listen)
    c = Host(PrivateKey.generate_ed25519(), psk, "/pincluster/rpc/1.0", listen)
    await b.start()
    await c.start()
    try:
        f = tmp_path / "peerstore"
        a = Host(PrivateKey.generate_ed25519(), psk, "/pincluster/rpc/1.0", listen, peerstore_path=f)
        await a.start()
        await a.connect(b.addrs[0])
        await c.connect(a.addrs[0])  # inbound: a learns c's listen address from the handshake
        for _ in range(100):
            if a.is_connected(c.peer_id):
                break
            await asyncio.sleep(0.01)
        await a.close()
        lines = f.read_text().splitlines()
        assert str(b.addrs[0]) in lines and str(c.addrs[0]) in lines
        # a restarted peer dials what its peerstore knows
        a2 = Host(PrivateKey.generate_ed25519(), psk, "/pincluster/rpc/1.0", listen, peerstore_path=f)
        await a2.start()
        try:
            assert sorted(await a2.bootstrap()) == sorted([b.peer_id, c.peer_id])
            assert sorted(a2.connected_peers()) == sorted([b.peer_id, c.peer_id])
        finally:
            await a2.close()
    finally:
        await b.close()
        await c.close()
