"""A host listening on an unspecified address (0.0.0.0, ::) lists the machine's interface addresses instead, as
libp2p does: ``ipfs-cluster-ctl id`` shows addresses another peer can dial, and the handshake announces them."""

from __future__ import annotations

import socket

import psutil

from pincluster.p2p.host import Host, interface_addrs
from pincluster.p2p.keys import PrivateKey
from pincluster.types.multiaddr import Multiaddr

SECRET = bytes(range(32))


def _ips(family: socket.AddressFamily) -> set[str]:
    return {a.address.partition("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == family and not a.address.lower().startswith("fe80:")}


def test_a_specific_address_is_itself() -> None:
    ma = Multiaddr("/ip4/127.0.0.1/tcp/9096")
    assert interface_addrs(ma) == [ma]


def test_an_unspecified_address_becomes_every_interface_address_of_its_family() -> None:
    got = interface_addrs(Multiaddr("/ip4/0.0.0.0/tcp/9096"))
    assert {m.tcp_host_port() for m in got} == {(ip, 9096) for ip in _ips(socket.AF_INET)}
    assert ("127.0.0.1", 9096) in {m.tcp_host_port() for m in got}
    six = interface_addrs(Multiaddr("/ip6/::/tcp/9096"))
    if _ips(socket.AF_INET6):
        assert {m.tcp_host_port()[0] for m in six} == _ips(socket.AF_INET6)  # no link-local, no zone
    else:
        assert six == [Multiaddr("/ip6/::/tcp/9096")]  # nothing to list: the address as it is


async def test_a_host_on_0000_lists_dialable_addresses_and_is_reached_through_them() -> None:
    server = Host(PrivateKey.generate_ed25519(), SECRET, "/pincluster/rpc/2.1", [Multiaddr("/ip4/0.0.0.0/tcp/0")])
    client = Host(PrivateKey.generate_ed25519(), SECRET, "/pincluster/rpc/2.1", [Multiaddr("/ip4/127.0.0.1/tcp/0")])
    await server.start()
    await client.start()
    try:
        assert server.addrs and not any(a.value_for("ip4") == "0.0.0.0" for a in server.addrs)
        assert all(a.peer_id == server.peer_id for a in server.addrs)
        loopback = [a for a in server.addrs if a.value_for("ip4") == "127.0.0.1"]
        assert len(loopback) == 1
        assert await client.connect(loopback[0]) == server.peer_id
    finally:
        await client.close()
        await server.close()


